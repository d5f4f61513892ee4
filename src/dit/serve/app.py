"""The HTTP side of ``dit serve``: a JSON API (OpenAPI at ``/openapi.json``) and the page that uses it.

Endpoints (``docs/serve.md`` has examples):

* ``GET /api/info``: the model (classes with names, image size), samplers, defaults and limits.
* ``POST /api/jobs``: queue a generation → 202 with the job; 422 for bad input, 429 when busy.
* ``GET /api/jobs/{id}``: the job's state (for polling); ``GET /api/jobs/{id}/events``: the same as
  server-sent events until it finishes. When the last page streaming a job goes away before it
  finishes, the job is cancelled.
* ``POST /api/jobs/{id}/cancel``; ``GET /api/jobs/{id}/preview.png``: the images as they form
  (decoded x_0 predictions); ``GET /api/jobs/{id}/images/{k}.png``, ``/grid.png``,
  ``/protocol.json``: the results.

Every error is JSON ``{"error": "<one line>"}`` (plus ``field`` for bad input), never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import typing
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional, Union

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from dit import __version__
from dit.config import API_FIELDS, GenerationRequest, request_from_api
from dit.config.fields import info
from dit.config.request import api_name, flag
from dit.diffusion.registry import DEFAULTS, names_for
from dit.data.class_names import class_index
from dit.errors import UserError, one_line, shorten
from dit.sampling.writers import grid_image
from dit.serve.body_limit import MAX_BODY_BYTES, BodyLimit
from dit.serve.jobs import FINISHED, Busy, Job, JobQueue

log = logging.getLogger("dit.serve")

MAX_TIMESTEP = {"gaussian": 999, "flow": 1000}  # guidance intervals are on the model's timestep scale
MAX_CFG_SCALE = 100.0
MAX_ERROR_CHARS = 300  # an error answer quotes input only as short excerpts (errors.shorten); this caps the rest
CLASS_LISTING = "GET /api/info lists the class names and ids"
STATIC = resources.files("dit.serve") / "static"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may wait."""

    max_images: int = 16
    max_steps: int = 1000
    max_waiting: int = 4
    max_body_bytes: int = MAX_BODY_BYTES


@dataclass(frozen=True)
class Model:
    """What a request is checked against: the model's objective, its samplers and their defaults."""

    objective: str
    samplers: tuple[str, ...]
    default_sampler: str
    default_steps: int
    max_timestep: int

    @classmethod
    def of(cls, pipe) -> "Model":
        objective = str(getattr(pipe.loaded.diffusion_config, "objective", "gaussian"))
        sampler, steps = DEFAULTS[objective]
        return cls(objective, names_for(objective), sampler, int(steps), MAX_TIMESTEP[objective])

    def page_defaults(self, limits: Limits) -> dict[str, Any]:
        """The page's starting values: the objective's sampler and steps (`dit sample`'s; capped by the limits),
        guidance 4 (the official sample.py's)."""
        return {
            "num_images": min(4, limits.max_images),
            "sampler": self.default_sampler,
            "num_steps": min(self.default_steps, limits.max_steps),
            "cfg_scale": 4.0,
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
            float,
            Field(
                4.0,
                ge=0.0,
                le=MAX_CFG_SCALE,
                allow_inf_nan=False,
                description="classifier-free guidance scale (1 = off)",
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
    if sampler not in model.samplers:
        raise BadRequest(
            "sampler",
            f"unknown sampler {sampler!r} for this {model.objective} model; choose one of {', '.join(model.samplers)}",
        )
    interval = body.pop("guidance_interval")
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
        ).validate()
    except UserError as e:  # a bound of a generated setting: the message starts with its flag
        raise BadRequest(*_field_of(one_line(e))) from None


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


def _field_of(message: str) -> tuple[str, str]:
    """(API name, message naming it) of the setting whose flag starts ``message`` (``body`` when none does)."""
    for api, name in API_FIELDS.items():
        if message.startswith(flag(name) + " "):
            return api, api + message[len(flag(name)) :]
    return "body", message


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) → PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Result:
    images: list[bytes]  # one PNG per image
    grid: bytes  # the PNG grid `dit sample --out x.png` would write
    card: dict[str, Any]


def preview_due(step: int, total: int, previews: int) -> bool:
    """Whether step ``step`` (1-based) of ``total`` gets a preview: ``previews`` evenly spaced, the last included."""
    if previews <= 0:
        return False
    every = max(1, -(-total // previews))  # ceil
    return step % every == 0 or step == total


def run_job(pipe, job: Job, previews: int = 8) -> Result:
    """Draw a job's images, grid and card; its progress callback reports steps, makes previews, stops it when cancelled.

    A preview is the current batch's predicted x_0 decoded (``pipe.decode``) as a grid, at
    ``previews`` evenly spaced steps: it shows the images forming while the sampler runs.
    """
    request: GenerationRequest = job.request
    job.num_steps = int(request.num_sampling_steps or 0)  # check_request resolved it

    def on_step(i: int, total: int, x0) -> None:
        job.progress(i + 1, total)  # raises Cancelled once the job was cancelled
        if preview_due(i + 1, total, previews):
            job.preview = png_bytes(grid_image(pipe.decode(x0, output_type="np")))  # (H', W', 3)
            job.version += 1

    images, card = pipe.generate(dataclasses.replace(request, output_type="np"), on_step)  # (N, H, W, 3) uint8
    return Result([png_bytes(a) for a in images], png_bytes(grid_image(images, request.class_labels)), card)


def error(status: int, message: str, headers: Optional[dict[str, str]] = None, **extra: Any) -> JSONResponse:
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def job_state(job: Job, queue: JobQueue) -> dict[str, Any]:
    """What the API says about a job (the page renders exactly this)."""
    status = job.status  # read once: the worker thread moves it on
    state: dict[str, Any] = {
        "id": job.id,
        "status": status,
        "step": job.step,
        "num_steps": job.num_steps or job.request.num_sampling_steps,
        "position": queue.position(job),
        "error": job.error,
    }
    if status == "running" and job.preview is not None:
        state["preview"] = f"/api/jobs/{job.id}/preview.png?step={job.step}"
    if status == "done" and isinstance(job.result, Result):
        base = f"/api/jobs/{job.id}"
        state["images"] = [f"{base}/images/{k}.png" for k in range(len(job.result.images))]
        state["grid"] = f"{base}/grid.png"
        state["protocol"] = f"{base}/protocol.json"
        state["card"] = job.result.card
    return state


def _short(text: str) -> str:
    """``text`` as it is when short and printable, else a quoted excerpt."""
    return text if len(text) <= 40 and text.isprintable() else shorten(text)


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(field, one line) from pydantic's first complaint."""
    errs = exc.errors()
    if not errs:
        return "body", "invalid request"
    e = errs[0]
    # loc names the fields the client sent (an unknown key can be any string): quoted only in short
    loc = [_short(str(p)) for p in e.get("loc", ()) if p != "body"]
    field = loc[0] if loc else "body"
    msg = str(e.get("msg", "invalid value"))
    if e.get("type") == "extra_forbidden":
        msg = f"unknown field; the fields are {', '.join(GenerateRequest.model_fields)}"
    elif e.get("type") == "json_invalid":  # loc is (body, character position), not a field
        where = f" (at character {loc[0]})" if loc and loc[0].isdigit() else ""
        return "body", f'body: the body is not valid JSON{where}; send a JSON object such as {{"classes": [1]}}'
    return field, f"{'.'.join(loc) or 'body'}: {msg}"


def create_app(pipe, limits: Limits = Limits(), ckpt: str = "", previews: int = 8) -> FastAPI:
    """The app around one :class:`dit.Pipeline` on one device (one job at a time; see :class:`JobQueue`).

    ``previews``: how many decoded previews a running job shows (0: none).
    """
    app = FastAPI(
        title="dit serve",
        version=__version__,
        docs_url=None,
        redoc_url=None,  # Swagger UI needs a CDN
        description='Sample a DiT checkpoint. Every error is JSON {"error": "..."}.',
    )
    model = Model.of(pipe)
    jobs = JobQueue(lambda job: run_job(pipe, job, previews), max_waiting=limits.max_waiting)
    app.state.jobs = jobs
    app.router.add_event_handler("shutdown", jobs.close)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        field, message = _validation_message(exc)
        return error(422, message, field=field)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest):
        return error(422, f"{exc.field}: {exc}", field=exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("request %s failed", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    def find(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            gone = "finished jobs are kept for a while, then dropped"
            raise StarletteHTTPException(404, f"no job {_short(job_id)} ({gone})")
        return job

    def finished_result(job_id: str) -> Result:
        job = find(job_id)
        if job.status != "done" or not isinstance(job.result, Result):
            raise StarletteHTTPException(409, f"job {job_id} is {job.status}, it has no images")
        return job.result

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/info", summary="The model, samplers, defaults and limits")
    def info() -> dict[str, Any]:
        names, n = pipe.class_names, int(pipe.num_classes)
        classes = [{"id": k, "name": names[k] if names and k < len(names) else f"class {k}"} for k in range(n)]
        return {
            "dit_version": __version__,
            "checkpoint": ckpt,
            "classes": classes,
            "objective": model.objective,
            "samplers": list(model.samplers),
            "defaults": model.page_defaults(limits),
            "limits": limits.__dict__,
            "max_timestep": model.max_timestep,
            "max_cfg_scale": MAX_CFG_SCALE,
            "queue": jobs.stats(),
        }

    @app.post(
        "/api/jobs",
        status_code=202,
        summary="Queue a generation",
        responses={
            422: {"description": "bad input: {error, field}"},
            429: {"description": "busy: {error}, try again after Retry-After seconds"},
        },
    )
    def submit(req: GenerateRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        work = check_request(req, pipe, limits, model)
        try:
            job = jobs.submit(work)
        except Busy as e:
            return error(429, f"busy: {e}; try again in a moment", headers={"Retry-After": "5"}, retry_after=5)  # type: ignore[return-value]
        return job_state(job, jobs)

    @app.get("/api/jobs/{job_id}", summary="A job's state (poll this, or stream /events)")
    def state(job_id: str) -> dict[str, Any]:
        return job_state(find(job_id), jobs)

    @app.post("/api/jobs/{job_id}/cancel", summary="Stop a job (waiting: dropped; running: stops at its next step)")
    def cancel(job_id: str) -> dict[str, Any]:
        job = find(job_id)
        jobs.cancel(job_id, "cancelled by request")
        return job_state(job, jobs)

    @app.get(
        "/api/jobs/{job_id}/events",
        summary="Server-sent events: the job's state at every change",
        response_class=StreamingResponse,
    )
    async def events(job_id: str, request: Request):
        job = find(job_id)

        async def stream():
            jobs.watch(job, +1)
            last, beat = -1, 0.0
            try:
                while True:
                    if job.version != last:
                        last = job.version
                        state = job_state(job, jobs)  # one snapshot: the job may finish while it is sent
                        yield f"event: state\ndata: {json.dumps(state)}\n\n"
                        if state["status"] in FINISHED:
                            return
                    elif beat >= 5.0:  # a comment line: keeps proxies open and notices a gone client
                        beat = 0.0
                        yield ": waiting\n\n"
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.1)
                    beat += 0.1
            finally:
                if jobs.watch(job, -1) == 0 and not job.finished:
                    jobs.cancel(job.id, "cancelled: the page that asked for it went away")

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @app.get(
        "/api/jobs/{job_id}/images/{index}.png",
        summary="Image k of a finished job",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def image(job_id: str, index: int):
        result = finished_result(job_id)
        if not 0 <= index < len(result.images):
            raise StarletteHTTPException(404, f"job {job_id} has images 0..{len(result.images) - 1}")
        return Response(result.images[index], media_type="image/png")

    @app.get(
        "/api/jobs/{job_id}/preview.png",
        summary="The latest preview of a running job (predicted images)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def preview(job_id: str):
        job = find(job_id)
        if job.preview is None:
            raise StarletteHTTPException(404, f"job {job_id} has no preview yet")
        return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get(
        "/api/jobs/{job_id}/grid.png",
        summary="All images of a finished job as one PNG grid",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def grid(job_id: str):
        return Response(
            finished_result(job_id).grid,
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="dit-{job_id}.png"'},
        )

    @app.get("/api/jobs/{job_id}/protocol.json", summary="The protocol card of a finished job")
    def card(job_id: str) -> dict[str, Any]:
        return finished_result(job_id).card

    return app
