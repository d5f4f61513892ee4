"""`dit sample`: parse flags → SampleConfig + GenerationRequest → dit.sampling.generate_to_file."""

from __future__ import annotations

import argparse
from typing import get_args

from dit.cli.argtypes import positive_int
from dit.cli.flags import add_fields, from_args
from dit.config import GenerationRequest, SampleConfig, WeightsChoice
from dit.config.sample import DRAW

_C = SampleConfig()  # the flags' defaults: each setting is defined once, in dit.config

HELP = (
    "draw samples from a checkpoint into a PNG grid, an .npz or a folder of PNGs "
    "(one process, or one rank per GPU under torchrun)"
)
DESCRIPTION = (
    "Draw images from a dit checkpoint (EMA weights by default), its .safetensors export, or an official DiT .pt "
    "(then say which model: --model DiT-XL/2 --image-size 256; a non-official size needs a file that carries its "
    "config, e.g. `dit convert` output). --out FILE.png writes a grid (one row per class when classes are balanced); "
    "--out FILE.npz writes arr_0 (N, H, W, 3) uint8 and arr_1 (N,) labels for `dit eval` and ADM's evaluator; "
    "--out DIR/ writes one PNG per sample (000000.png, or 000000_class207.png with labels), the input of clean-fid "
    "and torch-fidelity. A protocol card FILE.protocol.json (DIR.protocol.json) records everything that fixed "
    "the pixels. Sample i depends only on the settings, the seed "
    "and i, so the file is the same for any number of processes: torchrun --nproc_per_node 8 -m dit.cli.main sample "
    "... splits the work; an interrupted run picks up the shards already written in FILE.shards/ when rerun."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Official script names (sample.py / sample_ddp.py) are accepted where they mean the same:
    # --global-seed, --per-proc-batch-size, --num-fid-samples, --sample-dir, --tf32/--no-tf32.
    w = p.add_argument_group("weights")
    w.add_argument(
        "--ckpt",
        required=True,
        help="a dit checkpoint (.pt), its .safetensors export, an official DiT .pt, "
        "a diffusers folder or a Hugging Face hub id (org/name, read through its cache; HF_HUB_OFFLINE=1: cache only)",
    )
    w.add_argument(
        "--weights", choices=get_args(WeightsChoice), default=_C.weights, help="which weights of a training checkpoint"
    )
    w.add_argument(
        "--model", default=None, help="official files only: the size, e.g. DiT-XL/2 (our checkpoints carry it)"
    )
    w.add_argument(
        "--image-size", type=positive_int, default=None, help="official files only: image side in pixels (256, 512)"
    )
    w.add_argument(
        "--num-classes", type=positive_int, default=None, help="official files only: number of classes (default 1000)"
    )
    w.add_argument(
        "--vae",
        default=None,
        help="decoder: ema, mse, none (pixel space) or an AutoencoderKL folder "
        "(default: the one recorded in the checkpoint; mse for official files, as the official sample.py)",
    )

    p.add_argument_group(DRAW)
    o = p.add_argument_group("output and speed")
    o.add_argument(
        "--out",
        default=None,
        help="FILE.png (grid), FILE.npz (arr_0 images, arr_1 labels) or DIR/ (one PNG per sample; new or empty)",
    )
    o.add_argument(
        "--sample-dir",
        dest="out",
        type=_folder,
        metavar="DIR",
        help="the official sample_ddp.py's name for --out DIR/ (one PNG per sample)",
    )
    o.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=_C.tf32,
        help="TensorFloat-32 matmuls/convolutions on CUDA "
        "(on by default, as in training and the official sample_ddp.py)",
    )
    o.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    o.add_argument("--keep-shards", action="store_true", help="keep FILE.shards/ after merging (default: removed)")
    o.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_fields(p, GenerationRequest)  # what to draw and how: every flag from its GenerationRequest field


def _folder(text: str) -> str:
    return text.rstrip("/") + "/"


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from dit.errors import UserError

    if not args.out:
        raise UserError("no output: pass --out FILE.png, FILE.npz or DIR/ (or --sample-dir DIR)")
    from dit.sampling import generate_to_file

    def value(name: str):
        v = getattr(args, name)
        return tuple(v) if isinstance(v, list) else v

    cfg = SampleConfig(**{f.name: value(f.name) for f in dataclasses.fields(SampleConfig)})
    request = from_args(GenerationRequest, args)
    out = generate_to_file(cfg, request, keep_shards=args.keep_shards)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {out} and {out}.protocol.json")
    return 0
