"""Samplers for flow-matching models: functions over one signature (as k-diffusion's ``sampling.py``).

    sample(model_fn, shape, sampler="heun", num_steps=25, time_shift=1.0, generator=...)

``model_fn(x, t, **model_kwargs)`` returns the velocity v̂ (N, C, ...) and is called with the
model time t·1000 (see :mod:`dit.diffusion.flow`), so classifier-free guidance
(:func:`dit.diffusion.guidance.guided_model_fn`, both channel modes) and its interval (in 0..1000)
wrap it unchanged. Time runs from t = 1 (noise) to t = 0 (data) on the grid
t_i = shift(1 − i/K), i = 0..K, with the SD3 time shift (Esser et al. 2024, eq. 23)

    shift(t) = s·t / (1 + (s − 1)·t)

(s = 1: uniform; s > 1 spends more steps near the noise end, as larger images want).

Samplers (K = ``num_steps`` steps):
- ``euler``: explicit Euler on dx/dt = v̂ (K model calls, first order).
- ``heun``: Heun's method, the trapezoidal corrector on every step (Karras et al. 2022, Alg. 1
  without churn; 2K model calls, second order). v̂ is finite at t = 0, so the last step is
  corrected too.
- ``sde``: Euler–Maruyama on the reverse-time SDE with the ODE's marginals (SiT §3.3):
  in reverse time τ = 1 − t,  dx = [−v̂ + ½ g²(t) ∇log p_t(x)] dτ + g(t) dW_τ,  with
  g²(t) = c·t (SiT's "sigma" diffusion form; c = ``sde_diffusion``). With the score
  ∇log p_t = −(x + (1 − t)v̂)/t the drift term ½g²∇log p_t = −½c(x + (1 − t)v̂) has no 1/t. The
  last step (to t = 0) adds no noise: it is the Euler step x − t·v̂ = x̂_0 (as DDPM's last step
  returns its mean). K model calls.

Stochastic sampling takes ``generator``: None (global RNG), one ``torch.Generator``, or a list of
one generator per batch row — then row i depends on generator i only, whatever batch or process
it is drawn in (see ``dit.runtime.rng``).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from dit.config import FLOW_PREDICTIONS
from dit.diffusion.flow import TIME_SCALE, score_from_velocity, velocity_from_x0, x0_from_velocity
from dit.diffusion.gaussian import Generator, draw_noise, progress_bar
from dit.errors import UserError

Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]
"""callback(step index, model time t·1000 of the step's start, x after the step, predicted x_0)."""


def shift_time(t: torch.Tensor | float, shift: float):
    """SD3's time shift t' = s·t / (1 + (s − 1)·t); maps [0, 1] onto itself, fixes 0 and 1."""
    return shift * t / (1 + (shift - 1) * t)


def time_grid(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """K + 1 decreasing times from 1 to 0 (float64): shift(linspace(1, 0, K + 1))."""
    if num_steps < 1:
        raise UserError(f"number of sampling steps must be >= 1, got {num_steps}")
    if not (math.isfinite(shift) and shift > 0):
        raise UserError(f"--time-shift must be a positive number (1 = none), got {shift}")
    return shift_time(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), shift)


def _velocity(model_fn, x: torch.Tensor, t: float, model_kwargs: dict) -> torch.Tensor:
    """v̂(x, t) (N, C, ...) from ``model_fn`` called at model time t·1000 (first C channels)."""
    tt = torch.full((x.shape[0],), t * TIME_SCALE, dtype=torch.float32, device=x.device)  # (N,)
    with torch.no_grad():
        return model_fn(x, tt, **model_kwargs)[:, : x.shape[1]].to(x.dtype)


def velocity_model(model_fn: Callable, prediction: str) -> Callable:
    """``model_fn`` as a velocity model: an x-prediction network's x̂_0 becomes v̂ = (x − x̂_0)/max(t, 0.05)
    (linear in the output, so classifier-free guidance inside ``model_fn`` is unchanged by it)."""
    if prediction not in FLOW_PREDICTIONS:
        raise UserError(f"a flow model predicts one of {FLOW_PREDICTIONS}, got {prediction!r}")
    if prediction == "v":
        return model_fn

    def from_x0(x: torch.Tensor, tt: torch.Tensor, **kwargs) -> torch.Tensor:
        x0 = model_fn(x, tt, **kwargs)[:, : x.shape[1]]  # (N, C, ...)
        return velocity_from_x0(x, tt.to(x.dtype) / TIME_SCALE, x0.to(x.dtype))

    return from_x0


def _x0(x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
    return x0_from_velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), v)


def euler(model_fn, x, ts, model_kwargs=None, progress=False, callback=None, **_):
    """Explicit Euler on dx/dt = v̂ over the grid ``ts`` (1 → 0): x ← x + (t_{i+1} − t_i)·v̂(x, t_i)."""
    kw = model_kwargs or {}
    for i in progress_bar(range(len(ts) - 1), progress, "euler"):
        t, t_next = float(ts[i]), float(ts[i + 1])
        v = _velocity(model_fn, x, t, kw)
        if callback is not None:
            x0 = _x0(x, t, v)
        x = x + (t_next - t) * v
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return x


def heun(model_fn, x, ts, model_kwargs=None, progress=False, callback=None, **_):
    """Heun's method (Karras et al. 2022, Alg. 1, no churn) over the grid ``ts``.

    1. predictor: x' = x + h·v̂(x, t_i), h = t_{i+1} − t_i
    2. corrector: x ← x + h·(v̂(x, t_i) + v̂(x', t_{i+1}))/2
    """
    kw = model_kwargs or {}
    for i in progress_bar(range(len(ts) - 1), progress, "heun"):
        t, t_next = float(ts[i]), float(ts[i + 1])
        h = t_next - t
        v = _velocity(model_fn, x, t, kw)
        x_pred = x + h * v  # step 1
        v_next = _velocity(model_fn, x_pred, t_next, kw)
        x0 = _x0(x, t, v) if callback is not None else None
        x = x + h * 0.5 * (v + v_next)  # step 2
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return x


def sde(
    model_fn,
    x,
    ts,
    model_kwargs=None,
    progress=False,
    callback=None,
    generator: Generator = None,
    sde_diffusion: float = 1.0,
    **_,
):
    """Euler–Maruyama on the reverse SDE dx = [−v̂ + ½g²∇log p_t]dτ + g dW_τ, g² = c·t, τ = 1 − t.

    With Δ = t_i − t_{i+1} > 0 and z ~ N(0, I) from ``generator`` (per row):
      x ← x + Δ·(−v̂ + ½·c·t_i·∇log p_{t_i}(x)) + √(c·t_i·Δ)·z      (every step but the last)
      x ← x − t·v̂ = x̂_0                                             (last step, to t = 0)
    """
    if not (math.isfinite(sde_diffusion) and sde_diffusion >= 0):
        raise UserError(f"--sde-diffusion must be a finite number >= 0, got {sde_diffusion}")
    kw = model_kwargs or {}
    n = len(ts) - 1
    for i in progress_bar(range(n), progress, "sde"):
        t, t_next = float(ts[i]), float(ts[i + 1])
        v = _velocity(model_fn, x, t, kw)
        x0 = _x0(x, t, v)
        if i == n - 1 or t_next == 0.0:
            x = x + (t_next - t) * v  # = x̂_0 when t_next = 0
        else:
            dt = t - t_next  # > 0, a step of reverse time
            g2 = sde_diffusion * t  # g(t)²
            score = score_from_velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), v)
            drift = -v + 0.5 * g2 * score
            z = draw_noise(tuple(x.shape), generator, x.device, x.dtype)
            x = x + dt * drift + math.sqrt(g2 * dt) * z
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return x


SAMPLERS: dict[str, Callable] = {"euler": euler, "heun": heun, "sde": sde}
"""Name → flow sampler; the ``--sampler`` choices of a flow-matching checkpoint."""

STOCHASTIC = {"sde"}
DEFAULT_SAMPLER, DEFAULT_STEPS = "heun", 25
"""What ``dit sample`` uses on a flow checkpoint unless told: Heun, 25 steps (50 model calls)."""


def sample(
    model_fn: Callable,
    shape,
    sampler: str = DEFAULT_SAMPLER,
    num_steps: Optional[int] = None,
    noise: Optional[torch.Tensor] = None,
    generator: Generator = None,
    model_kwargs: Optional[dict] = None,
    progress: bool = False,
    callback: Optional[Callback] = None,
    clip_denoised: bool = False,
    time_shift: float = 1.0,
    sde_diffusion: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float32,
    prediction: str = "v",
) -> torch.Tensor:
    """Integrate a flow model from x_1 = ``noise`` (or noise drawn from ``generator``) to x_0 (N, C, ...).

    ``clip_denoised`` clamps the result to [−1, 1] (pixel-space models); ``prediction`` is what
    ``model_fn`` outputs (``"v"``, or ``"xstart"`` for an x-prediction network).
    """
    if sampler not in SAMPLERS:
        raise UserError(f"unknown flow sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    ts = time_grid(int(num_steps if num_steps is not None else DEFAULT_STEPS), float(time_shift))
    x = noise if noise is not None else draw_noise(tuple(shape), generator, device, dtype)
    if device is not None:
        x = x.to(device)
    x = SAMPLERS[sampler](
        velocity_model(model_fn, prediction),
        x,
        ts,
        model_kwargs=model_kwargs,
        progress=progress,
        callback=callback,
        generator=generator,
        sde_diffusion=sde_diffusion,
    )
    return x.clamp(-1, 1) if clip_denoised else x
