"""A diffusion that skips steps of a base process (ADM's ``SpacedDiffusion``).

The respaced process keeps ᾱ at the chosen original timesteps and re-derives its βs from them,
so it is a valid diffusion of its own; the model is always called with the *original*
timesteps (0..T−1 of the base process), as it was trained.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from dit.diffusion.gaussian import GaussianDiffusion
from dit.diffusion.schedules import respaced_betas


class SpacedDiffusion(GaussianDiffusion):
    """``GaussianDiffusion`` over ``use_timesteps`` of the process defined by ``betas``."""

    def __init__(self, use_timesteps: Iterable[int], *, betas: np.ndarray, **kwargs):
        self.base_betas = np.asarray(betas, dtype=np.float64)  # (T_base,) kept for re-spacing
        self.base_kwargs = dict(kwargs)
        new_betas, timestep_map = respaced_betas(self.base_betas, use_timesteps)
        self.timestep_map = torch.tensor(timestep_map, dtype=torch.long)  # (K,) index → original t
        self.original_num_steps = len(self.base_betas)
        super().__init__(betas=new_betas, **kwargs)

    def respaced(self, use_timesteps: Iterable[int]) -> "SpacedDiffusion":
        """The same base process visiting other original timesteps."""
        return SpacedDiffusion(use_timesteps, betas=self.base_betas, **self.base_kwargs)

    def _wrap_model(self, model: Callable) -> Callable:
        if isinstance(model, _TimestepMapped):
            return model
        return _TimestepMapped(model, self.timestep_map)


class _TimestepMapped:
    """Calls ``model`` with the original timestep of each respaced index."""

    def __init__(self, model: Callable, timestep_map: torch.Tensor):
        self.model, self.timestep_map = model, timestep_map

    def __call__(self, x, t, **kwargs):
        original_t = self.timestep_map.to(t.device)[t]  # (N,)
        return self.model(x, original_t, **kwargs)
