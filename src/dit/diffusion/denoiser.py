"""The one interface every sampler draws through: a model on the objective's model-time axis.

    denoiser(x, t) → the network's raw output (N, C or 2C, ...)

``t`` (N,) is *model time*, the one axis both objectives share with the network's timestep
embedding, with classifier-free guidance's interval and with sampler callbacks: the trained integer
timesteps 0..T−1 of a Gaussian diffusion (t = 999 is noise), or t·1000 for flow matching
(:data:`dit.diffusion.flow.TIME_SCALE`; 1000 is noise). A :class:`Denoiser` also converts the raw
output into what a sampler needs: the ADM loops of the Gaussian samplers read the process
(:attr:`Denoiser.objective`) and call the model themselves; flow samplers ask for the velocity v̂
(:meth:`Denoiser.velocity`, an x-prediction network's x̂_0 turned into v̂).

``clip_denoised`` (pixel-space models) clamps x̂_0 predictions (Gaussian, as ADM) and the final
sample (flow) to [−1, 1]: :meth:`Denoiser.clip`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from dit.diffusion.flow import TIME_SCALE, velocity_from_x0

Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]
"""callback(step index, model time of the step's start, x after the step, predicted x_0)."""


class Denoiser:
    """``model_fn(x, t, **model_kwargs)`` on the model-time axis of ``objective`` (a Gaussian diffusion
    or :class:`dit.diffusion.flow.FlowMatching`), with the conversions samplers need."""

    def __init__(
        self,
        objective: Any,
        model_fn: Callable[..., torch.Tensor],
        model_kwargs: Optional[dict] = None,
        clip_denoised: bool = False,
    ):
        self.objective = objective
        self.model_fn = model_fn
        self.model_kwargs = dict(model_kwargs or {})
        self.clip_denoised = clip_denoised

    @property
    def kind(self) -> str:
        """``"gaussian"``, ``"flow"`` or ``"meanflow"``: which samplers fit."""
        return str(getattr(self.objective, "objective", "gaussian"))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The raw output (N, C or 2C, ...) at model time ``t`` (N,)."""
        with torch.no_grad():
            return self.model_fn(x, t, **self.model_kwargs)

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Flow models: v̂(x, t) (N, C, ...) at t in [0, 1], the model called at t·1000 (first C channels).

        An x-prediction network's x̂_0 becomes v̂ = (x − x̂_0)/max(t, 0.05), linear in the output, so
        classifier-free guidance inside ``model_fn`` is unchanged by it.
        """
        tt = torch.full((x.shape[0],), t * TIME_SCALE, dtype=torch.float32, device=x.device)  # (N,)
        out = self(x, tt)[:, : x.shape[1]]  # (N, C, ...)
        if getattr(self.objective, "prediction", "v") == "v":
            return out.to(x.dtype)
        return velocity_from_x0(x, tt.to(x.dtype) / TIME_SCALE, out.to(x.dtype)).to(x.dtype)

    def average_velocity(self, x: torch.Tensor, t: float, r: float) -> torch.Tensor:
        """MeanFlow models: û(x, r, t) (N, C, ...), the model called at t with the interval t − r (both in [0, 1],
        ``meanflow.MODEL_TIME_SCALE``; an x-prediction network's x̂ becomes (x − x̂)/max(t, 0.05), as in training)."""
        n = x.shape[0]
        tt = torch.full((n,), t, dtype=torch.float32, device=x.device)  # (N,)
        rr = torch.full((n,), r, dtype=torch.float32, device=x.device)  # (N,)

        def model(z: torch.Tensor, t_model: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
            return self.model_fn(z, t_model, **kw)[:, : z.shape[1]].to(z.dtype)

        with torch.no_grad():
            return self.objective.average_velocity(model, x, tt, rr, **self.model_kwargs).to(x.dtype)

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        """``x0`` clamped to [−1, 1] for pixel-space models, else unchanged."""
        return x0.clamp(-1, 1) if self.clip_denoised else x0
