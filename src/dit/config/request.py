"""One generation request: which images, how to draw them, with what numerics, in what form.

:class:`GenerationRequest` is the one description every way of asking for images shares: `dit sample`
builds it from its flags, ``dit.Pipeline.__call__`` from keyword arguments, `dit serve` from a JSON
body, the training hooks from their settings. Each field is declared once here (help, flag, choices,
and the name the Python API and the server use, ``api``); command lines, the server's request model
and the API's keyword arguments are generated from these fields, and :meth:`GenerationRequest.validate`
is the one place a request is checked. Below this boundary, samplers and models only assert.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Tuple, get_args

from dit.config.base import DictMixin
from dit.config.fields import Namer, SettingError, check_settings, flag_of, setting
from dit.config.sample import DRAW, OUTPUT, SAMPLER_NAMES, GuidanceChannels, Precision
from dit.errors import UserError, shorten

OutputType = Literal["pil", "np", "pt"]
OUTPUT_TYPES: tuple[str, ...] = get_args(OutputType)
API_KEY = "dit.api"  # field metadata: the field's name in the Python API and the server's JSON


# The flow samplers' step grids: the names of dit.diffusion.flow_samplers.TIME_SCHEDULES, copied here so that
# command lines list them without importing torch (tests/unit/diffusion/test_time_schedules.py keeps them equal).
TIME_SCHEDULE_NAMES = ("uniform", "cosine")


def flag(name: str) -> str:
    """The command-line flag of request field ``name``."""
    return flag_of(REQUEST_FIELDS[name])


def _api(name: str) -> dict[str, Any]:
    return {"metadata": {API_KEY: name}}


@dataclass
class GenerationRequest(DictMixin):
    """What to draw (classes, how many), how (sampler, steps, its options, guidance), the seed, the
    numerics and batching, and the form of the result (``output_type``, for the Python API).

    ``sampler``/``num_sampling_steps`` None: the checkpoint objective's default (Gaussian: DDPM 250,
    the paper's FID; flow: Heun 25). ``num_samples`` None: one image per class label given, else 16.
    A sampler reads the options it declares (``eta``, ``time_schedule``, ``time_shift``, ``sde_diffusion``; see
    ``dit.diffusion.registry``), and the protocol card records them.
    """

    class_labels: Optional[Tuple[int, ...]] = setting(
        None,
        help="class indices; sample i gets label i mod their number (default: balanced, i mod num_classes)",
        metavar="LABEL",
        group=DRAW,
        **_api("classes"),
    )
    num_samples: Optional[int] = setting(
        None,
        aliases=("--num-fid-samples",),
        help="number of images (default: one per --class-labels entry, else 16)",
        group=DRAW,
        bound=">0",
        **_api("num_images"),
    )
    sampler: Optional[str] = setting(
        None,
        choices=SAMPLER_NAMES,
        help="gaussian (ε) checkpoints: ddpm (ancestral, the paper's; default), ddim, dpm++2m, dpm++2m-karras, ...; "
        "flow checkpoints: heun-x0 (the --recipe fast default: x-prediction), heun (for v-prediction), euler, sde; "
        "meanflow for MeanFlow. A checkpoint's recorded sampler (dit train --sampler) comes first",
        group=DRAW,
    )
    num_sampling_steps: Optional[int] = setting(
        None,
        help="sampler steps (default: the checkpoint's recorded steps, else 250 for ddpm, the paper's FID; 10 for "
        "heun-x0, 19 model calls; 25 for heun, 50 calls)",
        group=DRAW,
        bound=">0",
        **_api("num_steps"),
    )
    cfg_scale: Optional[float] = setting(
        None,
        help="classifier-free guidance scale (1 = off; default: the checkpoint's, else 1.5, the paper's FID; "
        "1 for a MeanFlow model with guidance in its weights)",
        group=DRAW,
        bound=">=0",
    )
    guidance_channels: GuidanceChannels = setting(
        "all",
        help="guide all ε channels (standard) or the first 3 only (official DiT, needed to match FID 2.27)",
        group=DRAW,
    )
    guidance_interval: Optional[Tuple[int, int]] = setting(
        None,
        help="guide only at timesteps LO <= t <= HI (of 0..999; flow models: t·1000); other steps run conditional only",
        metavar=("LO", "HI"),
        group=DRAW,
    )
    eta: float = setting(0.0, help="DDIM η (0 = deterministic)", group=DRAW, bound=">=0")
    time_schedule: str = setting(
        "uniform",
        choices=TIME_SCHEDULE_NAMES,
        help="flow samplers: the step grid before the time shift: uniform in t, or cosine (the uniform steps of "
        "a cosine-schedule diffusion: finer mid-way, coarser at both ends)",
        group=DRAW,
    )
    time_shift: float = setting(
        1.0,
        help="flow samplers: SD3 time shift s of the step grid, t' = s·t/(1+(s-1)·t) (1 = uniform in t)",
        group=DRAW,
        bound=">0",
    )
    sde_diffusion: float = setting(
        1.0,
        help="flow sampler sde: diffusion coefficient g(t)² = c·t of the reverse SDE (0 = the ODE)",
        group=DRAW,
        bound=">=0",
    )
    seed: int = setting(
        0, help="seed; sample i's noise comes from (seed, i) alone", aliases=("--global-seed",), group=DRAW
    )
    precision: Precision = setting("fp32", help="autocast precision of the DiT (the VAE decodes in fp32)", group=OUTPUT)
    batch_size: int = setting(
        32,
        aliases=("--per-proc-batch-size",),
        help="images per forward pass per process (keep it when resuming)",
        group=OUTPUT,
        bound=">0",
    )
    output_type: OutputType = setting(
        "pil",
        cli=False,
        flag="output_type",  # an API keyword only: errors name it as it is typed
        help="the Python API's result: a list of PIL images, a uint8 (N, H, W, 3) array, or a float (N, 3, H, W) "
        "tensor in [0, 1]",
    )

    def validate(self, name: Namer = flag) -> "GenerationRequest":
        """One-line :class:`SettingError` for a request no checkpoint can be sampled with; returns self.

        ``name`` says a setting as the asker typed it: its flag (default), or its API name
        (:func:`api_setting`) for the Python API and the server. What depends on the checkpoint
        (which samplers fit it, its classes, whether it can be guided) is checked where it is
        loaded (``dit.sampling.ImageSampler``).
        """
        if self.sampler is not None and self.sampler not in SAMPLER_NAMES:  # said as samplers say it
            raise SettingError("sampler", f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLER_NAMES)}")
        positive = {"num_sampling_steps": ">= 1", "num_samples": "positive", "batch_size": "positive"}
        for field, words in positive.items():
            value = getattr(self, field)
            if value is not None and value < 1:
                raise SettingError(field, f"{name(field)} must be {words}, got {value}")
        labels, n = self.class_labels, self.num_samples
        if labels and n is not None and n < len(labels):  # sample i gets labels[i mod len]: the rest never drawn
            raise SettingError(
                "num_samples",
                f"{name('class_labels')} gives {len(labels)} labels but {name('num_samples')} is {n}, so "
                f"{shorten(list(labels[n:]))} would never be drawn; pass {name('num_samples')} {len(labels)} "
                "(or a multiple of it for balanced classes), or fewer labels",
            )
        self._check_numbers(name)
        check_settings(self, name)  # the remaining choices and bounds, in the generic words
        return self

    def _check_numbers(self, name: Namer) -> None:
        interval = self.guidance_interval
        if interval is not None and len(interval) != 2:
            raise SettingError(
                "guidance_interval", f"{name('guidance_interval')} takes two timesteps LOW HIGH, got {list(interval)}"
            )
        if interval is not None and interval[0] > interval[1]:
            raise SettingError(
                "guidance_interval",
                f"{name('guidance_interval')}: guidance interval {tuple(interval)} is empty; give low <= high",
            )
        if self.cfg_scale is not None and not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise SettingError(
                "cfg_scale", f"{name('cfg_scale')} must be a finite number >= 0 (1 = no guidance), got {self.cfg_scale}"
            )
        if not 0.0 <= self.eta <= 1.0:  # beyond 1 the DDIM step takes the square root of a negative number
            raise SettingError(
                "eta", f"{name('eta')} must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {self.eta}"
            )
        if not (math.isfinite(self.time_shift) and self.time_shift > 0):
            raise SettingError(
                "time_shift", f"{name('time_shift')} must be a positive number (1 = none), got {self.time_shift}"
            )
        if not (math.isfinite(self.sde_diffusion) and self.sde_diffusion >= 0):
            raise SettingError(
                "sde_diffusion", f"{name('sde_diffusion')} must be a finite number >= 0, got {self.sde_diffusion}"
            )


def api_name(f: dataclasses.Field) -> str:
    """The field's name in the Python API and the server's JSON (its own name unless declared)."""
    return str(f.metadata.get(API_KEY, f.name))


def api_setting(name: str) -> str:
    """The Python API's (and the server's) name of request field ``name``: how their errors say it."""
    return api_name(REQUEST_FIELDS[name])


REQUEST_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(GenerationRequest)}
API_FIELDS: dict[str, str] = {api_name(f): f.name for f in dataclasses.fields(GenerationRequest)}
"""API name → field name (``classes`` → ``class_labels``; most fields keep their name)."""


def request_from_api(base: Optional[GenerationRequest] = None, **kwargs: Any) -> GenerationRequest:
    """``base`` (default: the field defaults) with the given API keyword arguments; UserError names unknown ones.

    Tuples stay tuples (a list of classes or an interval is accepted), so the request compares and
    records the same however it was built.
    """
    unknown = sorted(set(kwargs) - set(API_FIELDS))
    if unknown:
        raise UserError(f"unknown generation settings {unknown}; the settings are {', '.join(API_FIELDS)}")
    changes: dict[str, Any] = {API_FIELDS[k]: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return dataclasses.replace(base or GenerationRequest(), **changes)
