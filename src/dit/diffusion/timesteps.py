"""Training timesteps as pure maps from a uniform coin u ∈ [0, 1) to t.

Training draws one coin per example from its own stream (``dit.runtime.rng``); these maps turn it
into a timestep, so 1 process and W processes, and a resumed run, draw the same t whatever the
distribution.

- ``uniform``: t = u (the paper's choice; the Gaussian diffusion then takes ⌊u·T⌋).
- ``logit-normal(m, s)`` (Esser et al. 2024, SD3 §3.1): t = sigmoid(m + s·Φ⁻¹(u)), i.e. the
  logit of t is N(m, s²); with m = 0, s = 1 it puts most mass in the middle of [0, 1].
"""

from __future__ import annotations

from typing import Callable

import torch

from dit.config import TIMESTEP_SAMPLINGS
from dit.errors import UserError


def uniform(u: torch.Tensor) -> torch.Tensor:
    """t = u: uniform on [0, 1)."""
    return u


def logit_normal(u: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """t = sigmoid(mean + std·Φ⁻¹(u)) (inverse-CDF sampling of the logit-normal law); same dtype as u."""
    return torch.sigmoid(mean + std * torch.special.ndtri(u))


def continuous_map(sampling: str, mean: float = 0.0, std: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map u → t ∈ [0, 1] named ``sampling``."""
    if sampling == "uniform":
        return uniform
    if sampling == "logit-normal":
        if not (std > 0):
            raise UserError(f"the logit-normal std must be positive, got {std}")
        return lambda u: logit_normal(u, mean, std)
    raise UserError(f"unknown timestep sampling {sampling!r}; choose one of {list(TIMESTEP_SAMPLINGS)}")


def discrete_map(
    sampling: str, num_timesteps: int, mean: float = 0.0, std: float = 1.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map u → integer t ∈ {0..T−1}: ⌊T·c(u)⌋ with c the continuous map (uniform: the paper's ⌊u·T⌋)."""
    cont = continuous_map(sampling, mean, std)

    def fn(u: torch.Tensor) -> torch.Tensor:
        return (cont(u) * num_timesteps).long().clamp_(max=num_timesteps - 1)  # (n,) int64

    return fn
