"""The endpoints of ``dit serve`` (the module docstring of :mod:`dit.serve.app` lists them).

Each reads what it serves from ``request.app.state.served`` (:class:`Served`), which
:func:`dit.serve.app.create_app` sets.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dit import __version__
from dit.errors import shorten
from dit.serve.jobs import FINISHED, Busy, Job, JobQueue
from dit.serve.requests import MAX_CFG_SCALE, GenerateRequest, Limits, Model, check_request
from dit.serve.results import Result, job_state

MAX_ERROR_CHARS = 300  # an error answer quotes input only as short excerpts (errors.shorten); this caps the rest
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}

router = APIRouter()


@dataclass(frozen=True)
class Served:
    """One app's pipeline, its limits, the model's sampling facts, the checkpoint named and the job queue."""

    pipe: Any
    limits: Limits
    model: Model
    ckpt: str
    jobs: JobQueue


def error(status: int, message: str, headers: Optional[dict[str, str]] = None, **extra: Any) -> JSONResponse:
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def short(text: str) -> str:
    """``text`` as it is when short and printable, else a quoted excerpt."""
    return text if len(text) <= 40 and text.isprintable() else shorten(text)


def _served(request: Request) -> Served:
    return request.app.state.served


def _find(request: Request, job_id: str) -> Job:
    job = _served(request).jobs.get(job_id)
    if job is None:
        gone = "finished jobs are kept for a while, then dropped"
        raise StarletteHTTPException(404, f"no job {short(job_id)} ({gone})")
    return job


def _finished_result(request: Request, job_id: str) -> Result:
    job = _find(request, job_id)
    if job.status != "done" or not isinstance(job.result, Result):
        raise StarletteHTTPException(409, f"job {job_id} is {job.status}, it has no images")
    return job.result


@router.get("/api/info", summary="The model, samplers, defaults and limits")
def info(request: Request) -> dict[str, Any]:
    s = _served(request)
    names, n = s.pipe.class_names, int(s.pipe.num_classes)
    classes = [{"id": k, "name": names[k] if names and k < len(names) else f"class {k}"} for k in range(n)]
    return {
        "dit_version": __version__,
        "checkpoint": s.ckpt,
        "classes": classes,
        "objective": s.model.objective,
        "samplers": list(s.model.samplers),
        "defaults": s.model.page_defaults(s.limits),
        "limits": s.limits.__dict__,
        "max_timestep": s.model.max_timestep,
        "max_cfg_scale": MAX_CFG_SCALE,
        "queue": s.jobs.stats(),
    }


@router.post(
    "/api/jobs",
    status_code=202,
    summary="Queue a generation",
    responses={
        422: {"description": "bad input: {error, field}"},
        429: {"description": "busy: {error}, try again after Retry-After seconds"},
    },
)
def submit(req: GenerateRequest, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
    s = _served(request)
    work = check_request(req, s.pipe, s.limits, s.model)
    try:
        job = s.jobs.submit(work)
    except Busy as e:
        return error(429, f"busy: {e}; try again in a moment", headers={"Retry-After": "5"}, retry_after=5)  # type: ignore[return-value]
    return job_state(job, s.jobs)


@router.get("/api/jobs/{job_id}", summary="A job's state (poll this, or stream /events)")
def state(job_id: str, request: Request) -> dict[str, Any]:
    return job_state(_find(request, job_id), _served(request).jobs)


@router.post("/api/jobs/{job_id}/cancel", summary="Stop a job (waiting: dropped; running: stops at its next step)")
def cancel(job_id: str, request: Request) -> dict[str, Any]:
    job, jobs = _find(request, job_id), _served(request).jobs
    jobs.cancel(job_id, "cancelled by request")
    return job_state(job, jobs)


@router.get(
    "/api/jobs/{job_id}/events",
    summary="Server-sent events: the job's state at every change",
    response_class=StreamingResponse,
)
async def events(job_id: str, request: Request):
    job = _find(request, job_id)
    stream = _state_stream(job, _served(request).jobs, request)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _state_stream(job: Job, jobs: JobQueue, request: Request):
    """The job's state at every change until it finishes; the last page watching it going away cancels it."""
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


@router.get(
    "/api/jobs/{job_id}/images/{index}.png", summary="Image k of a finished job", response_class=Response, responses=PNG
)
def image(job_id: str, index: int, request: Request):
    result = _finished_result(request, job_id)
    if not 0 <= index < len(result.images):
        raise StarletteHTTPException(404, f"job {job_id} has images 0..{len(result.images) - 1}")
    return Response(result.images[index], media_type="image/png")


@router.get(
    "/api/jobs/{job_id}/preview.png",
    summary="The latest preview of a running job (predicted images)",
    response_class=Response,
    responses=PNG,
)
def preview(job_id: str, request: Request):
    job = _find(request, job_id)
    if job.preview is None:
        raise StarletteHTTPException(404, f"job {job_id} has no preview yet")
    return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/api/jobs/{job_id}/grid.png",
    summary="All images of a finished job as one PNG grid",
    response_class=Response,
    responses=PNG,
)
def grid(job_id: str, request: Request):
    return Response(
        _finished_result(request, job_id).grid,
        media_type="image/png",
        headers={"Content-Disposition": f'attachment; filename="dit-{job_id}.png"'},
    )


@router.get("/api/jobs/{job_id}/protocol.json", summary="The protocol card of a finished job")
def card(job_id: str, request: Request) -> dict[str, Any]:
    return _finished_result(request, job_id).card
