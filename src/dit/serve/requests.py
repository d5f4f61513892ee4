"""What ``dit serve`` accepts: the request schema generated from :class:`GenerationRequest`'s settings,
the server's limits, and the checks that turn a request into the :class:`GenerationRequest` drawn."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import ConfigDict, Field, create_model

from dit.config import GenerationRequest, request_from_api
from dit.config.fields import SettingError, info
from dit.config.request import api_name, api_setting
from dit.data.class_names import class_index
from dit.diffusion.registry import guidance_interval_error, names_for
from dit.errors import UserError, one_line
from dit.pipeline import API_CFG_SCALE
from dit.serve.body_limit import MAX_BODY_BYTES

MAX_TIMESTEP = {"gaussian": 999, "flow": 1000, "meanflow": 1000}  # guidance intervals: the model's timestep scale
MAX_CFG_SCALE = 100.0
CLASS_LISTING = "GET /api/info lists the class names and ids"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may wait."""

    max_images: int = 16
    max_steps: int = 1000
    max_waiting: int = 4
    max_body_bytes: int = MAX_BODY_BYTES


@dataclass(frozen=True)
class Model:
    """What a request is checked against: the model's objective, its samplers and the checkpoint's defaults."""

    objective: str
    samplers: tuple[str, ...]
    default_sampler: str
    default_steps: int
    max_timestep: int
    default_cfg_scale: float = API_CFG_SCALE

    @classmethod
    def of(cls, pipe) -> "Model":
        objective = str(getattr(pipe.loaded.diffusion_config, "objective", "gaussian"))
        d = pipe.loaded.defaults  # the checkpoint's sampling defaults (dit.sampling.defaults)
        cfg = API_CFG_SCALE if d.cfg_scale is None else d.cfg_scale
        return cls(objective, names_for(objective), d.sampler, d.num_sampling_steps, MAX_TIMESTEP[objective], cfg)

    def page_defaults(self, limits: Limits) -> dict[str, Any]:
        """The page's starting values: the checkpoint's sampler, steps (capped by the limits) and guidance (else 4,
        the official sample.py's)."""
        return {
            "num_images": min(4, limits.max_images),
            "sampler": self.default_sampler,
            "num_steps": min(self.default_steps, limits.max_steps),
            "cfg_scale": self.default_cfg_scale,
            "seed": 0,
        }


SERVER_DECIDES = ("precision", "batch_size", "output_type")  # the server's numerics and result form, not a request's


def _generated_fields() -> dict[str, Any]:
    """Pydantic fields of every :class:`GenerationRequest` setting the server does not decide, under its API
    name, with its type, default and help; the settings with server-side limits get them here."""
    limited: dict[str, Any] = {
        "classes": (
            list[Union[int, str]],
            Field(
                [],
                max_length=1000,
                examples=[["golden retriever"], [207, 360]],
                description="class ids or names; image i gets classes[i mod len] (empty for an unconditional model)",
            ),
        ),
        "num_images": (Optional[int], Field(None, ge=1, description="how many images (default: one per class given)")),
        "sampler": (
            Optional[str],
            Field(None, description="a sampler name (GET /api/info lists them; default: the model's)"),
        ),
        "num_steps": (Optional[int], Field(None, ge=1, description="sampler steps (default: the model's)")),
        "cfg_scale": (
            Optional[float],
            Field(
                None,
                ge=0.0,
                le=MAX_CFG_SCALE,
                allow_inf_nan=False,
                description="classifier-free guidance scale (1 = off; default: the model's, else 4)",
            ),
        ),
        "guidance_interval": (
            Optional[tuple[int, int]],
            Field(
                None,
                description="guide only at model timesteps lo <= t <= hi (0..999; flow: 0..1000); null = every step",
            ),
        ),
        "seed": (int, Field(0, ge=0, lt=2**63, description="image i's noise depends on (seed, i) only")),
    }
    fields: dict[str, Any] = {}
    hints = typing.get_type_hints(GenerationRequest)
    for f in dataclasses.fields(GenerationRequest):
        if f.name in SERVER_DECIDES:
            continue
        name = api_name(f)
        help_text = info(GenerationRequest, f).help
        constraints: dict[str, Any] = {"allow_inf_nan": False} if hints[f.name] is float else {}  # no NaN over JSON
        generated = (hints[f.name], Field(f.default, description=help_text, **constraints))
        fields[name] = limited.get(name, generated)
    return fields


GenerateRequest = create_model(  # type: ignore[call-overload]
    "GenerateRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One generation: ``num_images`` images, image i of class ``classes[i mod len(classes)]``.",
    **_generated_fields(),
)


class BadRequest(Exception):
    """A request the model cannot serve (422): ``field`` and a one-line message."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_request(req: Any, pipe, limits: Limits, model: Model) -> GenerationRequest:
    """The limits and the model's classes and samplers: :class:`BadRequest` naming the field.

    Returns the :class:`GenerationRequest` the pipeline draws (every other setting passed on as sent).
    """
    body = req.model_dump()
    classes = body.pop("classes")
    n = _check_counts(classes, body.pop("num_images"), pipe, limits)
    steps = body.pop("num_steps")
    steps = steps if steps is not None else min(model.default_steps, limits.max_steps)
    if steps > limits.max_steps:
        raise BadRequest("num_steps", f"at most {limits.max_steps} steps per request (asked {steps})")
    sampler = body.pop("sampler") or model.default_sampler
    if body.get("cfg_scale") is None:
        body["cfg_scale"] = model.default_cfg_scale
    if sampler not in model.samplers:
        raise BadRequest(
            "sampler",
            f"unknown sampler {sampler!r} for this {model.objective} model; choose one of {', '.join(model.samplers)}",
        )
    interval = body.pop("guidance_interval")
    if interval is not None and (why := guidance_interval_error(model.objective)):
        raise BadRequest("guidance_interval", f"{why}; leave it null")
    if interval is not None and not 0 <= interval[0] <= interval[1] <= model.max_timestep:
        raise BadRequest(
            "guidance_interval", f"needs 0 <= lo <= hi <= {model.max_timestep}, got [{interval[0]}, {interval[1]}]"
        )
    ids = []
    for c in classes:
        try:
            ids.append(class_index(c, int(pipe.num_classes), pipe.class_names, listing=CLASS_LISTING))
        except UserError as e:
            raise BadRequest("classes", one_line(e)) from None
    settings = dict(num_images=n, num_steps=steps, sampler=sampler, guidance_interval=interval, **body)
    try:
        return request_from_api(
            GenerationRequest(precision=getattr(pipe, "precision", "fp32")),
            classes=tuple(ids[i % len(ids)] for i in range(n)) if ids else None,
            **settings,
        ).validate(api_setting)
    except SettingError as e:
        raise BadRequest(api_setting(e.field), one_line(e)) from None
    except UserError as e:
        raise BadRequest("body", one_line(e)) from None


def _check_counts(classes: list, num_images: Optional[int], pipe, limits: Limits) -> int:
    """How many images: ``num_images`` or one per class, within the limits and the model's classes."""
    conditional = int(pipe.num_classes) > 0
    if conditional and not classes:
        raise BadRequest("classes", "give at least one class (a name or an id; GET /api/info lists them)")
    if not conditional and classes:
        raise BadRequest("classes", "this model is unconditional: send no classes")
    n = num_images if num_images is not None else max(1, len(classes))
    if n > limits.max_images:
        raise BadRequest("num_images", f"at most {limits.max_images} images per request (asked {n})")
    if len(classes) > n:
        raise BadRequest("classes", f"{len(classes)} classes for {n} images; give at most one class per image")
    return n
