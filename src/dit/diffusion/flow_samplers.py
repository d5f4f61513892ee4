"""Samplers for flow-matching models, on the one sampler signature (:mod:`dit.diffusion.registry`).

    euler(denoiser, x, steps, *, time_schedule="uniform", time_shift=1.0, generator=None, callback=None, ...)

``denoiser.velocity(x, t)`` gives v̂ (N, C, ...) with the model called at model time t·1000 (see
:mod:`dit.diffusion.denoiser`), so classifier-free guidance
(:func:`dit.diffusion.guidance.guided_model_fn`, both channel modes) and its interval (in 0..1000)
wrap it unchanged. Time runs from t = 1 (noise) to t = 0 (data) on the grid t_i = shift(g_i),
i = 0..K: a schedule's K + 1 times g_i from 1 to 0 (:data:`TIME_SCHEDULES`: ``uniform``,
g_i = 1 − i/K; ``cosine``, the times at which a cosine-schedule diffusion takes uniform steps),
then the SD3 time shift (Esser et al. 2024, eq. 23)

    shift(t) = s·t / (1 + (s − 1)·t)

(s = 1: none; s > 1 spends more steps near the noise end, as larger images want).

Samplers (K = ``steps`` steps, default 25):
- ``euler``: explicit Euler on dx/dt = v̂ (K model calls, first order).
- ``heun``: Heun's method, the trapezoidal corrector on every step (Karras et al. 2022, Alg. 1
  without churn; 2K model calls, second order). v̂ is finite at t = 0, so the last step is
  corrected too.
- ``heun-x0``: ``heun`` on every step but the last, which returns the model's x̂_0 (2K − 1 calls);
  for few steps with an x-prediction network (see :func:`heun_x0`).
- ``sde``: Euler–Maruyama on the reverse-time SDE with the ODE's marginals (SiT §3.3):
  in reverse time τ = 1 − t,  dx = [−v̂ + ½ g²(t) ∇log p_t(x)] dτ + g(t) dW_τ,  with
  g²(t) = c·t (SiT's "sigma" diffusion form; c = ``sde_diffusion``). With the score
  ∇log p_t = −(x + (1 − t)v̂)/t the drift term ½g²∇log p_t = −½c(x + (1 − t)v̂) has no 1/t. The
  last step (to t = 0) adds no noise: it is the Euler step x − t·v̂ = x̂_0 (as DDPM's last step
  returns its mean). K model calls.

Each returns x_0 (N, C, ...), clamped to [−1, 1] for pixel-space models (:meth:`Denoiser.clip`).
Stochastic sampling takes ``generator``: None (global RNG), one ``torch.Generator``, or a list of
one generator per batch row — then row i depends on generator i only, whatever batch or process
it is drawn in (see ``dit.runtime.rng``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from dit.diffusion.denoiser import Callback, Denoiser
from dit.diffusion.flow import TIME_SCALE, score_from_velocity, x0_from_velocity
from dit.diffusion.noise import Generator, draw_noise, progress_bar

DEFAULT_STEPS = 25
"""Steps of a flow sampler when none are given: Heun's 25 are 50 model calls."""


def shift_time(t: torch.Tensor | float, shift: float):
    """SD3's time shift t' = s·t / (1 + (s − 1)·t); maps [0, 1] onto itself, fixes 0 and 1."""
    return shift * t / (1 + (shift - 1) * t)


def uniform_times(num_steps: int) -> torch.Tensor:
    """K + 1 times uniform in t from 1 to 0 (float64)."""
    return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)


def cosine_times(num_steps: int) -> torch.Tensor:
    """K + 1 times (float64, 1 → 0) of the uniform steps τ_i = 1 − i/K of the cosine schedule (Nichol &
    Dhariwal 2021, ᾱ(τ) = cos²(πτ/2)): x_t = (1 − t)x_0 + tε has that diffusion's signal-to-noise ratio
    cot²(πτ/2) at t = sin(πτ/2) / (sin(πτ/2) + cos(πτ/2)). Steps are finer mid-way, coarser at both ends."""
    half_pi_tau = (math.pi / 2) * torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    s, c = torch.sin(half_pi_tau), torch.cos(half_pi_tau)
    return s / (s + c)


TIME_SCHEDULES = {"uniform": uniform_times, "cosine": cosine_times}
"""Name → the K + 1 times (1 → 0) a flow sampler steps through before the time shift; ``--time-schedule``."""


def time_grid(num_steps: int, shift: float = 1.0, schedule: str = "uniform") -> torch.Tensor:
    """K + 1 decreasing times from 1 to 0 (float64): shift(the schedule's times)."""
    assert num_steps >= 1, f"a time grid needs at least one step, got {num_steps}"
    assert math.isfinite(shift) and shift > 0, f"the time shift must be a positive number, got {shift}"
    assert schedule in TIME_SCHEDULES, f"unknown time schedule {schedule!r}; the schedules: {list(TIME_SCHEDULES)}"
    return shift_time(TIME_SCHEDULES[schedule](num_steps), shift)


def _x0(x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
    return x0_from_velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), v)


def euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: Optional[int] = None,
    *,
    time_schedule: str = "uniform",
    time_shift: float = 1.0,
    generator: Generator = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Explicit Euler on dx/dt = v̂ over the shifted grid (1 → 0): x ← x + (t_{i+1} − t_i)·v̂(x, t_i)."""
    ts = time_grid(DEFAULT_STEPS if steps is None else steps, time_shift, time_schedule)
    for i in progress_bar(range(len(ts) - 1), progress, "euler"):
        t, t_next = float(ts[i]), float(ts[i + 1])
        v = denoiser.velocity(x, t)
        if callback is not None:
            x0 = _x0(x, t, v)
        x = x + (t_next - t) * v
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return denoiser.clip(x)


def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: Optional[int] = None,
    *,
    time_schedule: str = "uniform",
    time_shift: float = 1.0,
    generator: Generator = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Heun's method (Karras et al. 2022, Alg. 1, no churn) over the shifted grid (1 → 0).

    1. predictor: x' = x + h·v̂(x, t_i), h = t_{i+1} − t_i
    2. corrector: x ← x + h·(v̂(x, t_i) + v̂(x', t_{i+1}))/2
    """
    ts = time_grid(DEFAULT_STEPS if steps is None else steps, time_shift, time_schedule)
    return _heun_loop(denoiser, x, ts, False, callback, progress, "heun")


def heun_x0(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: Optional[int] = None,
    *,
    time_schedule: str = "uniform",
    time_shift: float = 1.0,
    generator: Generator = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Heun's method for few steps: every step but the last as ``heun``; the last returns the model's own
    x̂_0(x, t_{K−1}) (an Euler step to t = 0, which lands on x̂_0 exactly), so 2K − 1 model calls.

    Why: at t = 0 the corrector asks for v̂(x', 0), which an x-prediction network gives only through
    v̂ = (x − x̂_0)/max(t, 0.05) — a difference amplified 20× — while its x̂_0 is what it was trained
    to output; the extra call is spent where it hurts instead of helps.
    """
    ts = time_grid(DEFAULT_STEPS if steps is None else steps, time_shift, time_schedule)
    return _heun_loop(denoiser, x, ts, True, callback, progress, "heun-x0")


def _heun_loop(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    last_x0: bool,
    callback: Optional[Callback],
    progress: bool,
    name: str,
) -> torch.Tensor:
    """Heun over ``ts`` (1 → 0); ``last_x0``: the last step is an Euler step, which at t = 0 is x̂_0 itself."""
    n = len(ts) - 1
    for i in progress_bar(range(n), progress, name):
        t, t_next = float(ts[i]), float(ts[i + 1])
        h = t_next - t
        v = denoiser.velocity(x, t)
        x0 = _x0(x, t, v)  # (N, C, H, W): elementwise, cheap beside the model call
        if last_x0 and i == n - 1:
            x = x0 if t_next == 0.0 else x + h * v
        else:
            v_next = denoiser.velocity(x + h * v, t_next)  # step 1: the predictor
            x = x + h * 0.5 * (v + v_next)  # step 2: the corrector
        if callback is not None:
            callback(i, t * TIME_SCALE, x, x0)
    return denoiser.clip(x)


def sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: Optional[int] = None,
    *,
    time_schedule: str = "uniform",
    time_shift: float = 1.0,
    sde_diffusion: float = 1.0,
    generator: Generator = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Euler–Maruyama on the reverse SDE dx = [−v̂ + ½g²∇log p_t]dτ + g dW_τ, g² = c·t, τ = 1 − t.

    With Δ = t_i − t_{i+1} > 0 and z ~ N(0, I) from ``generator`` (per row):
      x ← x + Δ·(−v̂ + ½·c·t_i·∇log p_{t_i}(x)) + √(c·t_i·Δ)·z      (every step but the last)
      x ← x − t·v̂ = x̂_0                                             (last step, to t = 0)
    """
    assert math.isfinite(sde_diffusion) and sde_diffusion >= 0, f"the SDE's c must be >= 0, got {sde_diffusion}"
    ts = time_grid(DEFAULT_STEPS if steps is None else steps, time_shift, time_schedule)
    n = len(ts) - 1
    for i in progress_bar(range(n), progress, "sde"):
        t, t_next = float(ts[i]), float(ts[i + 1])
        v = denoiser.velocity(x, t)
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
    return denoiser.clip(x)
