"""A job's work and what the API says about it: drawing its images (with previews), its state."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dit.config import GenerationRequest
from dit.sampling.writers import grid_image
from dit.serve.jobs import Job, JobQueue


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


def one_call_preview(pipe, request: GenerationRequest) -> bool:
    """Whether a job is first drawn in one model call as its preview: a MeanFlow checkpoint (one call is a whole
    sample there) asked for more than one call."""
    objective = getattr(pipe.loaded.diffusion_config, "objective", "gaussian")
    return objective == "meanflow" and request.sampler == "meanflow" and (request.num_sampling_steps or 0) > 1


def run_job(pipe, job: Job, previews: int = 8) -> Result:
    """Draw a job's images, grid and card; its progress callback reports steps, makes previews, stops it when cancelled.

    A preview is the current batch's predicted x_0 decoded (``pipe.decode``) as a grid, at
    ``previews`` evenly spaced steps: it shows the images forming while the sampler runs. A MeanFlow
    checkpoint's job is first drawn in one call (the same noise) and shown while the full one runs.
    """
    request: GenerationRequest = job.request
    job.num_steps = int(request.num_sampling_steps or 0)  # check_request resolved it
    if previews > 0 and one_call_preview(pipe, request):
        quick, _ = pipe.generate(dataclasses.replace(request, output_type="np", num_sampling_steps=1))
        job.preview = png_bytes(grid_image(quick, request.class_labels))  # (H', W', 3)
        job.version += 1

    def on_step(i: int, total: int, x0) -> None:
        job.progress(i + 1, total)  # raises Cancelled once the job was cancelled
        if preview_due(i + 1, total, previews):
            job.preview = png_bytes(grid_image(pipe.decode(x0, output_type="np")))  # (H', W', 3)
            job.version += 1

    images, card = pipe.generate(dataclasses.replace(request, output_type="np"), on_step)  # (N, H, W, 3) uint8
    return Result([png_bytes(a) for a in images], png_bytes(grid_image(images, request.class_labels)), card)


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
