"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): average velocities.

On the linear path of :mod:`dit.diffusion.flow`, z_t = (1 − t)·x + t·ε (t = 1 is noise), with
instantaneous velocity v(z_t, t), the average velocity over [r, t] is

    u(z_t, r, t) = 1/(t − r) · ∫_r^t v(z_τ, τ) dτ,   so that   z_r = z_t − (t − r)·u(z_t, r, t)

exactly: one network call jumps from t to r (one step from noise, r = 0, t = 1). Differentiating
(t − r)·u = ∫_r^t v in t gives the MeanFlow identity

    u(z_t, r, t) = v(z_t, t) − (t − r)·(d/dt) u(z_t, r, t),    (d/dt) u = v·∂_z u + ∂_t u,

the total derivative along the path: the Jacobian-vector product of u in (z, r, t) with the tangent
(v, 0, 1) (``torch.func.jvp``). Training regresses u_θ on the stop-gradient target

    u_tgt = v − clip(t − r, 0, 1)·(d/dt) u_θ,   v = ε − x (the conditional velocity, as in flow matching).

* (r, t): two draws of the configured time law (logit-normal in the paper), t the larger, r the
  smaller; only a share ``meanflow_share`` of examples keeps r < t (the paper: 25%), the others
  have r = t, where the target is v — plain flow matching.
* Loss: sg(w)·‖Δ‖², Δ = u_θ − u_tgt, ‖·‖² summed over the example's values, with the adaptive
  weight w = 1/(‖Δ‖² + c)^p (the paper: p = 1, c = 10⁻³; p = 0 is the plain squared error).
* Guidance folded into training (the paper's §4.2): for an example that keeps its label, v is
  replaced by ṽ = ω·(ε − x) + (1 − ω)·u_θ(z_t, t, t | ∅) — the model's own unconditional
  velocity, without gradient — in the target and as the jvp tangent. u_θ(·|c) then learns the
  guided field, so one call draws a guided sample (ω = 1: no guidance; dropped labels keep v).
* The network sees t and t − r on [0, 1] (:data:`MODEL_TIME_SCALE`; the interval embedding of
  :class:`dit.models.DiT`), not the t·1000 of flow models. With ``prediction="xstart"`` it outputs x̂
  and u = (z_t − x̂)/max(t, 0.05), the velocity whose jump to 0 lands on x̂ (as JiT's x-prediction in
  :mod:`dit.diffusion.flow`);
  the conversion is part of u, so the jvp differentiates through it.

The target's jvp runs under ``torch.no_grad`` on the unwrapped module and u_θ is a second, ordinary
forward through the (possibly distributed) training model: the target carries no gradient anyway,
and gradient synchronisation sees the usual one forward and one backward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from dit.config import FLOW_PREDICTIONS
from dit.diffusion.flow import TIME_SCALE, X0_MIN_T, interpolate, velocity_target
from dit.diffusion.losses import mean_flat

if TYPE_CHECKING:
    from dit.diffusion.denoiser import Denoiser


MODEL_TIME_SCALE = 1.0
"""A MeanFlow network is called on t and t − r in [0, 1] (flow models: t·1000). The target differentiates the
network in t, and at t·1000 the fast frequencies of the sinusoidal timestep embedding made (d/dt)u, and with it
the training, blow up: on 32 px digits the unweighted loss grew from 12 to 10¹² in 3,000 steps (x-prediction;
v-prediction alike); on [0, 1] it stays at 0.6 (the MeanFlow and SiT codes feed t in [0, 1] too)."""


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, ..., 1) in x's dtype."""
    return t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class IntervalTimes:
    """Map of per-example coins (n, 3) float64 → (t, r) as (n, 2) float32 (see the module docstring).

    ``coins = 3``: the trainer draws this many time coins per example (one for other objectives).
    """

    coins = 3

    def __init__(self, law: Callable[[torch.Tensor], torch.Tensor], share: float):
        self.law, self.share = law, float(share)

    def __call__(self, coins: torch.Tensor) -> torch.Tensor:
        a, b = self.law(coins[:, 0]), self.law(coins[:, 1])  # (n,) each, in [0, 1]
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        r = torch.where(coins[:, 2] < self.share, r, t)  # only a share keeps r < t
        return torch.stack([t, r], dim=1).float()  # (n, 2)


def average_velocity_target(v: torch.Tensor, dudt: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """u_tgt = v − clip(t − r, 0, 1)·du/dt, t and r (N,)."""
    return v - _bcast((t - r).clamp(0, 1), v) * dudt


def adaptive_loss(delta: torch.Tensor, power: float, c: float) -> torch.Tensor:
    """Per-example sg(w)·‖Δ‖², w = 1/(‖Δ‖² + c)^p, ‖Δ‖² summed over all but the batch dimension (N,)."""
    sq = delta.pow(2).flatten(1).sum(dim=1)  # (N,)
    if power == 0:
        return sq
    return sq / (sq.detach() + c).pow(power)


def jump(z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """z_r = z_t − (t − r)·u, t and r (N,)."""
    return z - _bcast(t - r, z) * u


def unwrap(model: Callable) -> Callable:
    """The plain module under a DistributedDataParallel or ``torch.compile`` wrapper (for the jvp)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class MeanFlow:
    """The MeanFlow training objective (what the trainer calls ``diffusion``); see the module docstring."""

    objective = "meanflow"
    num_timesteps = int(TIME_SCALE)

    def __init__(
        self,
        prediction: str = "v",
        guidance: float = 1.0,
        adaptive_power: float = 1.0,
        adaptive_c: float = 1e-3,
    ):
        if prediction not in FLOW_PREDICTIONS:
            raise ValueError(f"a MeanFlow model predicts one of {FLOW_PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.guidance, self.adaptive_power, self.adaptive_c = float(guidance), float(adaptive_power), float(adaptive_c)

    def average_velocity(
        self, model: Callable, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, **model_kwargs
    ) -> torch.Tensor:
        """u(z, r, t) (N, C, ...) from the network at model times t and t − r (:data:`MODEL_TIME_SCALE`), t, r (N,)."""
        s = MODEL_TIME_SCALE
        out = model(z, t * s, interval=(t - r) * s, **model_kwargs)  # (N, C, ...)
        if self.prediction == "v":
            return out
        return (z - out) / _bcast(t.clamp(min=X0_MIN_T), z)

    def guided_velocity(
        self, model: Callable, z: torch.Tensor, t: torch.Tensor, v: torch.Tensor, model_kwargs: dict
    ) -> torch.Tensor:
        """ṽ = ω·v + (1 − ω)·u(z, t, t | ∅) on rows that keep their label, v on dropped ones (no gradient)."""
        drop = model_kwargs.get("drop_mask")
        if self.guidance == 1.0 or drop is None or bool(drop.all()):
            return v
        kw = {**model_kwargs, "drop_mask": torch.ones_like(drop)}
        with torch.no_grad():
            uncond = self.average_velocity(model, z, t, t, **kw)  # (N, C, ...)
        guided = self.guidance * v + (1 - self.guidance) * uncond
        return torch.where(_bcast(drop, v).bool(), v, guided)

    def target(
        self, model: Callable, z: torch.Tensor, t: torch.Tensor, r: torch.Tensor, v: torch.Tensor, model_kwargs: dict
    ) -> torch.Tensor:
        """The stop-gradient u_tgt (N, C, ...) of ``model`` at z_t with path velocity v (the jvp tangent).

        Rows with r = t have u_tgt = v exactly (the jvp's factor t − r is 0), so the jvp runs on the
        rows with r < t only: a quarter of the batch in the paper's recipe.
        """
        rows = (t > r).nonzero().flatten()  # (k,)
        dudt = torch.zeros_like(v)
        if rows.numel():
            kw = {k: (a[rows] if isinstance(a, torch.Tensor) and a.dim() else a) for k, a in model_kwargs.items()}

            def u(z_: torch.Tensor, t_: torch.Tensor, r_: torch.Tensor) -> torch.Tensor:
                return self.average_velocity(model, z_, t_, r_, **kw)

            tk, rk = t[rows], r[rows]
            # The fused attention kernels have no forward-mode derivative; the math kernel (the same
            # softmax(QKᵀ/√d)V, composed of differentiable ops) has.
            with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
                out = torch.func.jvp(u, (z[rows], tk, rk), (v[rows], torch.ones_like(tk), torch.zeros_like(rk)))
            dudt[rows] = out[1].to(dudt.dtype)  # (k, C, ...): (d/dt) u on the rows with r < t
        return average_velocity_target(v, dudt, t, r).detach()

    def training_losses(
        self,
        model: Callable,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: Optional[dict] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Per-example ``loss`` (the adaptively weighted ‖u_θ − u_tgt‖²) and ``mse`` (its plain mean), for
        times ``t`` (N, 2) = [t, r] (:class:`IntervalTimes`)."""
        kw = dict(model_kwargs or {})
        if noise is None:
            noise = torch.randn_like(x_start)
        tt, rr = t[:, 0].float(), t[:, 1].float()  # (N,) each
        z = interpolate(x_start, noise, tt)  # (N, C, H, W)
        v = self.guided_velocity(unwrap(model), z, tt, velocity_target(x_start, noise), kw)  # (N, C, H, W)
        u_tgt = self.target(unwrap(model), z, tt, rr, v, kw)  # (N, C, H, W)
        u = self.average_velocity(model, z, tt, rr, **kw)  # (N, C, H, W), with gradient
        if u.shape != x_start.shape:
            raise ValueError(f"a MeanFlow model must output {tuple(x_start.shape)}, got {tuple(u.shape)}")
        delta = u - u_tgt
        return {"loss": adaptive_loss(delta, self.adaptive_power, self.adaptive_c), "mse": mean_flat(delta**2)}


def _jumps(
    average_velocity: Callable[[torch.Tensor, float, float], torch.Tensor],
    x: torch.Tensor,
    ts: torch.Tensor,
    callback: Optional[Callable[[int, float, torch.Tensor, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """x ← x − (t_i − t_{i+1})·u(x, t_{i+1}, t_i) along the decreasing grid ``ts``; one call per step."""
    for i in range(len(ts) - 1):
        t, r = float(ts[i]), float(ts[i + 1])
        u = average_velocity(x, t, r)  # (N, C, ...)
        x0 = x - t * u  # where this call's jump to 0 would land
        x = x - (t - r) * u
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return x


def sample(
    model_fn: Callable,
    x: torch.Tensor,
    ts: torch.Tensor,
    model_kwargs: Optional[dict] = None,
    prediction: str = "v",
    callback: Optional[Callable[[int, float, torch.Tensor, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """Jump along the decreasing grid ``ts`` (1 → 0), one call per step: x ← x − (t_i − t_{i+1})·u(x, t_{i+1}, t_i).

    ``model_fn(x, t, interval=t − r, **model_kwargs)`` is the network (its output read
    as ``prediction``); ``len(ts) − 1`` model calls in all (1: noise to data in one call).
    ``callback(i, t·1000, x after the step, x̂_0 = x − t·u)`` runs after every step.
    """
    objective = MeanFlow(prediction)
    kw = model_kwargs or {}

    def average_velocity(z: torch.Tensor, t: float, r: float) -> torch.Tensor:
        tt = torch.full((z.shape[0],), t, dtype=torch.float32, device=z.device)  # (N,)
        rr = torch.full((z.shape[0],), r, dtype=torch.float32, device=z.device)  # (N,)
        with torch.no_grad():
            return objective.average_velocity(model_fn, z, tt, rr, **kw).to(z.dtype)

    return _jumps(average_velocity, x, ts, callback)


DEFAULT_STEPS = 2
"""Jumps of the MeanFlow sampler when none are given: two model calls."""


def meanflow(
    denoiser: "Denoiser",
    x: torch.Tensor,
    steps: Optional[int] = None,
    *,
    time_schedule: str = "uniform",
    time_shift: float = 1.0,
    generator=None,
    callback=None,
    progress: bool = False,
) -> torch.Tensor:
    """The registry's MeanFlow sampler: ``steps`` jumps (default 2) on the flow samplers' (shifted) grid."""
    from dit.diffusion.flow_samplers import time_grid

    ts = time_grid(DEFAULT_STEPS if steps is None else steps, time_shift, time_schedule)
    return denoiser.clip(_jumps(denoiser.average_velocity, x, ts, callback))
