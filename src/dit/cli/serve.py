"""`dit serve`: parse flags → dit.serve.server.serve (a local page and JSON API to sample a checkpoint)."""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_int

HELP = "a local web page (and JSON API) to sample a checkpoint interactively"
DESCRIPTION = (
    "Serve a page where you pick a class, sampler, steps, guidance and seed and watch the images being drawn; "
    "download a PNG grid and the protocol card. The same settings and seed give the same images as `dit sample`. "
    "One generation runs at a time; up to --max-queue more wait, beyond that requests get 'busy' (HTTP 429). "
    "Binds to 127.0.0.1 (this machine only) unless --host says otherwise. Needs the serve extra: "
    "pip install 'dit[serve]'. The JSON API is described at /openapi.json (see docs/serve.md)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt",
        required=True,
        help="a dit checkpoint (.pt), its .safetensors export, an official DiT .pt, a diffusers folder or a hub id",
    )
    p.add_argument("--weights", choices=["ema", "model"], default="ema", help="which weights of a training checkpoint")
    p.add_argument(
        "--model", default=None, help="official files only: the size, e.g. DiT-XL/2 (our checkpoints carry it)"
    )
    p.add_argument("--image-size", type=positive_int, default=None, help="official files only: image side in pixels")
    p.add_argument("--num-classes", type=positive_int, default=None, help="official files only: number of classes")
    p.add_argument(
        "--vae", default=None, help="decoder: ema, mse, none or an AutoencoderKL folder (default: the recorded one)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 lets other machines in")
    p.add_argument("--port", type=positive_int, default=7860, help="TCP port")
    p.add_argument("--device", default=None, help="cuda or cpu; unset: cuda when available")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="autocast precision of the DiT (the VAE decodes in fp32), as dit sample --precision",
    )
    p.add_argument(
        "--previews",
        type=int,
        default=8,
        help="decoded previews of the predicted images shown while a job runs (0: none; each costs a decode)",
    )
    p.add_argument("--max-images", type=positive_int, default=16, help="images per request at most")
    p.add_argument("--max-steps", type=positive_int, default=1000, help="sampler steps per request at most")
    p.add_argument("--max-queue", type=int, default=4, help="requests that may wait behind the running one")


def run(args: argparse.Namespace) -> int:
    from dit.errors import UserError

    try:
        from dit.serve.server import serve
    except ImportError as e:
        if (e.name or "").split(".")[0] not in {"fastapi", "starlette", "uvicorn", "pydantic"}:
            raise
        raise UserError(
            f"dit serve needs fastapi and uvicorn ({e.name} is missing): pip install 'dit[serve]'"
        ) from None
    from dit.serve.app import Limits

    for flag, value in (("--max-queue", args.max_queue), ("--previews", args.previews)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    serve(
        args.ckpt,
        host=args.host,
        port=args.port,
        weights=args.weights,
        device=args.device,
        precision=args.precision,
        previews=args.previews,
        model=args.model,
        image_size=args.image_size,
        num_classes=args.num_classes,
        vae=args.vae,
        limits=Limits(max_images=args.max_images, max_steps=args.max_steps, max_waiting=args.max_queue),
    )
    return 0
