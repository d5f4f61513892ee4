"""`dit serve`: parse flags → dit.serve.server.serve (a local page and JSON API to sample a checkpoint)."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_fields, from_args, given
from dit.cli.run_config import check_required
from dit.config.serve import ServeConfig

HELP = "a local web page (and JSON API) to sample a checkpoint interactively"
DESCRIPTION = (
    "Serve a page where you pick a class, sampler, steps, guidance and seed and watch the images being drawn; "
    "download a PNG grid and the protocol card. The same settings and seed give the same images as `dit sample`. "
    "One generation runs at a time; up to --max-queue more wait, beyond that requests get 'busy' (HTTP 429). "
    "Binds to 127.0.0.1 (this machine only) unless --host says otherwise. Needs the serve extra: "
    "pip install 'dit[serve]'. The JSON API is described at /openapi.json (see docs/serve.md)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_fields(p, ServeConfig)


def run(args: argparse.Namespace) -> int:
    from dit.errors import UserError

    check_required({"serve": ServeConfig}, {("serve", name) for name in given(args)})
    cfg = from_args(ServeConfig, args).validate()
    try:
        from dit.serve.server import serve
    except ImportError as e:
        if (e.name or "").split(".")[0] not in {"fastapi", "starlette", "uvicorn", "pydantic"}:
            raise
        raise UserError(
            f"dit serve needs fastapi and uvicorn ({e.name} is missing): pip install 'dit[serve]'"
        ) from None
    from dit.serve.app import Limits

    serve(
        cfg.ckpt,
        host=cfg.host,
        port=cfg.port,
        weights=cfg.weights,
        device=cfg.device,
        precision=cfg.precision,
        previews=cfg.previews,
        limits=Limits(max_images=cfg.max_images, max_steps=cfg.max_steps, max_waiting=cfg.max_queue),
        **cfg.official(),
    )
    return 0
