"""The one sampler registry, for both objectives: name → :class:`Sampler`.

Every sampler is a function of one signature (as k-diffusion's ``sampling.py``)::

    fn(denoiser, x, steps=None, *, <its options>, generator=None, callback=None, progress=False) -> x_0

``denoiser`` is a :class:`dit.diffusion.denoiser.Denoiser` (the model on its model-time axis),
``x`` the initial noise (N, C, ...), ``steps`` the number of steps (None: the sampler's own
default), ``generator`` the step noise of stochastic samplers (None, one ``torch.Generator``, or
one per batch row: then row i depends on generator i only), ``callback(i, t, x, x0)`` runs after
every step. A sampler's *options* are its other keyword-only parameters (``eta``, ``time_shift``,
``sde_diffusion``): :func:`options_of` reads them from the signature, so a caller passes each
sampler exactly the settings it reads, and the protocol card records exactly those.

Registering a sampler is one entry of :data:`SAMPLERS`. Its name must also be in
``dit.config.SAMPLER_NAMES``, the torch-free copy the command lines list (a test keeps them equal).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from dit.diffusion import flow_samplers, meanflow, samplers
from dit.diffusion.denoiser import Callback, Denoiser
from dit.diffusion.noise import Generator, draw_noise
from dit.errors import UserError

_COMMON = {"generator", "callback", "progress"}


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: its function, the objective whose models it draws from, and whether it
    draws noise after x_T (``stochastic(options)``: DDIM only when η > 0)."""

    fn: Callable[..., torch.Tensor]
    objective: str
    stochastic: Callable[[dict[str, Any]], bool]

    @property
    def options(self) -> tuple[str, ...]:
        """The settings this sampler reads: its keyword-only parameters beyond the common ones."""
        return options_of(self.fn)


def options_of(fn: Callable) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON)


def _always(options: dict[str, Any]) -> bool:
    return True


def _never(options: dict[str, Any]) -> bool:
    return False


def _eta_positive(options: dict[str, Any]) -> bool:
    return float(options.get("eta", 0.0)) > 0


SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler(samplers.ddpm, "gaussian", _always),
    "ddim": Sampler(samplers.ddim, "gaussian", _eta_positive),
    "dpm++2m": Sampler(samplers.dpm_pp_2m, "gaussian", _never),
    "dpm++2m-time": Sampler(samplers.dpm_pp_2m_time, "gaussian", _never),
    "dpm++2m-karras": Sampler(samplers.dpm_pp_2m_karras, "gaussian", _never),
    "euler": Sampler(flow_samplers.euler, "flow", _never),
    "heun": Sampler(flow_samplers.heun, "flow", _never),
    "heun-x0": Sampler(flow_samplers.heun_x0, "flow", _never),
    "sde": Sampler(flow_samplers.sde, "flow", _always),
    "meanflow": Sampler(meanflow.meanflow, "meanflow", _never),
}
"""Name → sampler: the ``--sampler`` choices, for Gaussian-diffusion and flow-matching models."""

DEFAULTS: dict[str, tuple[str, int]] = {
    "gaussian": ("ddpm", 250),
    "flow": ("heun", flow_samplers.DEFAULT_STEPS),
    "meanflow": ("meanflow", meanflow.DEFAULT_STEPS),
}
"""Objective → (sampler, steps) used when none is given (DDPM-250 is the paper's FID protocol)."""
X0_FLOW_DEFAULT = ("heun-x0", 10)
"""The default of an x-prediction flow model (``--recipe fast``): Heun ending on the network's x̂_0, 19 calls.
Measured (docs/sampling.md, benchmarks/few_step.py): on flat-background digits plain Heun's last corrector,
which asks such a network for a velocity at t = 0, left grain (FID 273 at 20 calls, 23.7 for heun-x0 at 19)."""


def default_for(objective: str, prediction: Optional[str] = None) -> tuple[str, int]:
    """(sampler, steps) used when none is given, from what the checkpoint records: its objective and, for
    flow matching, what the network predicts."""
    if objective == "flow" and prediction == "xstart":
        return X0_FLOW_DEFAULT
    return DEFAULTS[objective]


OBJECTIVE_NAMES = {
    "gaussian": "a Gaussian-diffusion (ε-prediction) model",
    "flow": "a flow-matching (velocity) model",
    "meanflow": "a MeanFlow (average-velocity) model",
}


NO_GUIDANCE_INTERVAL = "does not apply to a MeanFlow model (one or two calls)"


def guidance_interval_error(objective: str) -> Optional[str]:
    """Why a model of ``objective`` takes no guidance interval, or None where it does (sampler and server alike)."""
    return NO_GUIDANCE_INTERVAL if objective == "meanflow" else None


def names_for(objective: str) -> tuple[str, ...]:
    """The sampler names that fit models of ``objective``, in registry order."""
    return tuple(name for name, s in SAMPLERS.items() if s.objective == objective)


def options_for(objective: str) -> tuple[str, ...]:
    """Every option some sampler of ``objective`` reads (the protocol card lists them all)."""
    return tuple(dict.fromkeys(o for name in names_for(objective) for o in SAMPLERS[name].options))


def check_sampler(objective: str, sampler: str) -> Sampler:
    """The registered sampler ``sampler`` for models of ``objective``; one clear UserError otherwise."""
    names = ", ".join(names_for(objective))
    entry = SAMPLERS.get(sampler)
    if entry is not None and entry.objective == objective:
        return entry
    if entry is not None:
        raise UserError(
            f"unknown sampler {sampler!r} here: {sampler} is for {OBJECTIVE_NAMES[entry.objective]}, "
            f"but this checkpoint is {OBJECTIVE_NAMES[objective]}; "
            f"use one of {names} (default {DEFAULTS[objective][0]})"
        )
    raise UserError(
        f"unknown sampler {sampler!r}; this checkpoint is {OBJECTIVE_NAMES[objective]}: choose one of {names}"
    )


def sample(
    objective: Any,
    model_fn: Callable[..., torch.Tensor],
    shape,
    sampler: Optional[str] = None,
    num_steps: Optional[int] = None,
    noise: Optional[torch.Tensor] = None,
    generator: Generator = None,
    model_kwargs: Optional[dict] = None,
    progress: bool = False,
    callback: Optional[Callback] = None,
    clip_denoised: bool = False,
    device=None,
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> torch.Tensor:
    """Draw x_0 of ``shape`` from ``model_fn`` trained with ``objective`` (a Gaussian diffusion or
    :class:`dit.diffusion.flow.FlowMatching`) by the registered ``sampler`` (None: the objective's
    default) in ``num_steps`` steps (None: the sampler's default: a Gaussian diffusion's own steps for
    DDPM/DDIM, 20 for DPM-Solver++, 25 for flow samplers).

    ``noise`` is x_T; without it x_T is drawn from ``generator`` (one, or one per row). ``options``
    are the sampler's own settings (``eta``, ``time_shift``, ``sde_diffusion``); an option the
    sampler does not read is refused.
    """
    denoiser = Denoiser(objective, model_fn, model_kwargs, clip_denoised)
    entry = check_sampler(
        denoiser.kind, sampler or default_for(denoiser.kind, getattr(objective, "prediction", None))[0]
    )
    if num_steps is not None and int(num_steps) < 1:
        raise UserError(f"number of sampling steps must be >= 1, got {num_steps}")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise TypeError(f"sampler {sampler!r} takes the options {list(entry.options)}, not {unknown}")
    x = noise if noise is not None else draw_noise(tuple(shape), generator, device, dtype)
    if device is not None:
        x = x.to(device)
    return entry.fn(denoiser, x, num_steps, generator=generator, callback=callback, progress=progress, **options)
