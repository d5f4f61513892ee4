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

import logging
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dit import __version__
from dit.serve.body_limit import BodyLimit
from dit.serve.jobs import JobQueue
from dit.serve.requests import BadRequest, GenerateRequest, Limits, Model, check_request
from dit.serve.results import preview_due, run_job
from dit.serve.routes import Served, error, router, short

__all__ = ["BadRequest", "GenerateRequest", "Limits", "Model", "check_request", "create_app", "preview_due"]

log = logging.getLogger("dit.serve")
STATIC = resources.files("dit.serve") / "static"
DEFAULT_LIMITS = Limits()


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(field, one line) from pydantic's first complaint."""
    errs = exc.errors()
    if not errs:
        return "body", "invalid request"
    e = errs[0]
    # loc names the fields the client sent (an unknown key can be any string): quoted only in short
    loc = [short(str(p)) for p in e.get("loc", ()) if p != "body"]
    field = loc[0] if loc else "body"
    msg = str(e.get("msg", "invalid value"))
    if e.get("type") == "extra_forbidden":
        msg = f"unknown field; the fields are {', '.join(GenerateRequest.model_fields)}"
    elif e.get("type") == "json_invalid":  # loc is (body, character position), not a field
        where = f" (at character {loc[0]})" if loc and loc[0].isdigit() else ""
        return "body", f'body: the body is not valid JSON{where}; send a JSON object such as {{"classes": [1]}}'
    return field, f"{'.'.join(loc) or 'body'}: {msg}"


def create_app(pipe, limits: Limits = DEFAULT_LIMITS, ckpt: str = "", previews: int = 8) -> FastAPI:
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
    jobs = JobQueue(lambda job: run_job(pipe, job, previews), max_waiting=limits.max_waiting)
    app.state.jobs = jobs
    app.state.served = Served(pipe, limits, Model.of(pipe), ckpt, jobs)
    app.router.add_event_handler("shutdown", jobs.close)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": one line} (bad input also names its ``field``), never a traceback."""

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
