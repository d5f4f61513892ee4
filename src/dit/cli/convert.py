"""`dit convert`: DiT weights between official .pt, our checkpoint/safetensors and diffusers folders."""

from __future__ import annotations

import argparse

HELP = "convert DiT weights between official .pt, dit checkpoints/safetensors and diffusers folders"
DESCRIPTION = (
    "Convert DiT weights, any size, patch size and class count. SRC is detected: a diffusers folder "
    "(model_index.json / config.json), a .safetensors file, or a .pt/.pth file (a dit train "
    "checkpoint, a dit weights file, an official bare state dict such as DiT-XL-2-256x256.pt, or an "
    "official train.py checkpoint with model/ema/opt/args). EMA weights are used by default. DST's "
    "format comes from --to or its suffix (.safetensors, .pt → dit, no suffix → diffusers folder). "
    "The config (size, classes, null class, learned-Σ channels, image size) travels with the "
    "weights except in the official format. Tensors are copied bit-exactly. Files are read "
    "without executing code (weights_only)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="checkpoint file (.pt/.pth/.safetensors) or diffusers folder")
    p.add_argument("dst", metavar="DST", help="output file or folder")
    p.add_argument(
        "--to",
        choices=["official", "dit", "safetensors", "diffusers"],
        default=None,
        help="output format (unset: from DST's suffix)",
    )
    p.add_argument("--model", default=None, help="official size such as DiT-XL/2 (unset: from the file or its shapes)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="image side in pixels; latent side = image-size/8 for 4-channel models (unset: from the file)",
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="number of classes (unset: from the file or its class table)"
    )
    p.add_argument(
        "--weights",
        choices=["ema", "model"],
        default="ema",
        help="which weights of a checkpoint that holds both: the EMA (for sampling) or the raw model",
    )
    p.add_argument(
        "--vae",
        default=None,
        help="with a diffusers DST: add this VAE (ema, mse or a local AutoencoderKL folder) to make a full DiTPipeline",
    )
    p.add_argument(
        "--scheduler",
        choices=["ddim", "ddpm"],
        default="ddim",
        help="diffusers scheduler written with the DiT schedule (linear β 1e-4..0.02, 1000 steps)",
    )
    p.add_argument(
        "--class-names",
        default=None,
        help="text file with one class name per line for the pipeline's id2label (unset: the file's own, else 0..N-1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def _read_names(path: str) -> list[str]:
    from dit.errors import UserError

    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as e:
        raise UserError(f"cannot read --class-names {path}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    from dit.weights.export import convert_checkpoint

    summary = convert_checkpoint(
        args.src,
        args.dst,
        to=args.to,
        model=args.model,
        image_size=args.image_size,
        num_classes=args.num_classes,
        weights=args.weights,
        vae=args.vae,
        scheduler=args.scheduler,
        class_names=_read_names(args.class_names) if args.class_names else None,
        overwrite=args.overwrite,
    )
    s = summary
    print(
        f"{s['source']} ({s['source_format']}, {s['weights']} weights) -> {s['destination']} ({s['format']}): "
        f"{s['model']}, image {s['image_size']}, {s['num_classes']} classes (null {s['null_class']}), "
        f"learn_sigma {s['learn_sigma']}, {s['tensors']} tensors"
    )
    for note in s["notes"]:
        print(f"note: {note}")
    return 0
