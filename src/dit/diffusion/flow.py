"""Flow matching with the linear interpolant and velocity prediction (SiT, Ma et al. 2024).

    x_t = (1 − t)·x_0 + t·ε,   t ∈ [0, 1] (t = 1 is pure noise),   target v = ε − x_0,
    loss = mean over pixels of (v̂(x_t, t) − v)².

No learned Σ: the model outputs C channels (v̂). The model's timestep embedding was designed for
DiT's 0..999 integer steps, so the model is called with ``t · TIME_SCALE`` (t·1000, a float):
the same range of frequencies, and the guidance interval keeps its 0..1000 units.

The network may instead predict the clean image x̂_0 (``prediction="xstart"``, JiT: Li & He 2025,
"Back to Basics: Let Denoising Generative Models Denoise"): in pixel space with large patches
(a patch of 8×8×3 = 192 values into a width-192 token) a velocity or noise target asks the network
to carry the full-dimensional noise through its bottleneck, a clean image does not. The loss stays
on the velocity, v̂ = (x_t − x̂_0) / max(t, X0_MIN_T), as JiT recommends; samplers convert the same way.

Given v̂, the other parametrisations follow (used by the samplers):
    ε̂ = x_t + (1 − t)·v̂,   x̂_0 = x_t − t·v̂,   ∇log p_t(x_t) = −ε̂ / t.
(From x_t = (1 − t)x̂_0 + t ε̂ and v̂ = ε̂ − x̂_0.)

Knows nothing about ``dit.models``: the model is any callable ``model(x, t, **kwargs)``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from dit.config import FLOW_PREDICTIONS
from dit.diffusion.losses import mean_flat

TIME_SCALE = 1000.0
"""The model sees t·1000: its sinusoidal embedding was built for timesteps 0..999."""
X0_MIN_T = 0.05
"""x-prediction: the smallest t in v̂ = (x_t − x̂_0)/t (JiT clips the same factor at 0.05)."""


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, ..., 1) in x's dtype, to scale each row of x."""
    return t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 − t)·x_0 + t·ε, t (N,) in [0, 1]."""
    tb = _bcast(t, x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = dx_t/dt = ε − x_0."""
    return noise - x0


def eps_from_velocity(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ε̂ = x_t + (1 − t)·v̂."""
    return x + (1 - _bcast(t, x)) * v


def x0_from_velocity(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x̂_0 = x_t − t·v̂."""
    return x - _bcast(t, x) * v


def velocity_from_x0(x: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """v̂ = (x_t − x̂_0) / max(t, X0_MIN_T), t (N,) in [0, 1] (from v = ε − x_0 and ε = (x_t − (1 − t)x_0)/t)."""
    return (x - x0) / _bcast(t.clamp(min=X0_MIN_T), x)


def score_from_velocity(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """∇log p_t(x_t) = −ε̂ / t = −(x_t + (1 − t)·v̂) / t (Tweedie: x_t given x_0 is N((1−t)x_0, t²))."""
    return -eps_from_velocity(x, t, v) / _bcast(t, x)


class FlowMatching:
    """The training objective of flow matching; what the trainer calls ``diffusion``.

    ``num_timesteps`` is the model-time scale (the trainer passes it to its timestep draw only
    for the Gaussian objective). ``objective`` names the family so that samplers are chosen right;
    ``prediction`` what the network outputs (``"v"`` or ``"xstart"``, see the module docstring).
    """

    objective = "flow"
    num_timesteps = int(TIME_SCALE)

    def __init__(self, prediction: str = "v"):
        if prediction not in FLOW_PREDICTIONS:
            raise ValueError(f"a flow model predicts one of {FLOW_PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The velocity v̂ (N, C, ...) the network's output ``out`` stands for at x_t, t (N,) in [0, 1]."""
        return out if self.prediction == "v" else velocity_from_x0(x_t, t, out)

    @staticmethod
    def model_time(t: torch.Tensor) -> torch.Tensor:
        """The timestep the model is called with: t·1000 (float)."""
        return t.float() * TIME_SCALE

    def training_losses(
        self,
        model: Callable,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: Optional[dict] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Per-example ``loss`` = ``mse`` = mean((v̂ − (ε − x_0))²) at continuous t (N,) in [0, 1]
        (v̂ the network's output, or the velocity its x̂_0 stands for)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = interpolate(x_start, noise, t)  # (N, C, H, W)
        out = model(x_t, self.model_time(t), **(model_kwargs or {}))  # (N, C, H, W)
        if out.shape != x_start.shape:
            raise ValueError(f"a flow model must output {tuple(x_start.shape)} (no learned Σ), got {tuple(out.shape)}")
        mse = mean_flat((self.velocity(x_t, t, out) - velocity_target(x_start, noise)) ** 2)  # (N,)
        return {"loss": mse, "mse": mse}
