"""``python -m benchmarks.large_images --out DIR``: what 64 px and larger photos cost per training step on a CPU.

Two ways to train a DiT on photos larger than 32 px: in pixel space with a larger patch (the token count stays
that of the 32 px model), or on latents of a VAE (``dit extract-latents --vae ...`` once, then ``dit train`` on
the latent cache: an 8× smaller side, 4 channels). This measures, in CPU seconds of this process (all threads):

* one training step of the DiT (forward, backward, AdamW) for each layout, at the precision ``--precision auto``
  picks on this machine (bf16 autocast where the matmul probe finds it faster);
* the VAE's encode (paid once per image by ``dit extract-latents``) and decode (paid per sample by ``dit sample``)
  per image.

The VAE is a randomly initialised diffusers ``AutoencoderKL`` of Stable Diffusion's shape (channels 128/256/512/512,
2 layers per block, 4 latent channels): no weights can be downloaded here, and its cost does not depend on them.
Data loading and the EMA update are left out of the step (the same for every layout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from benchmarks.common import SCHEMA_VERSION, environment, write_json

# (name, image size, space, patch): pixel layouts keep 16 or 64 tokens; latent layouts are at 1/8 the side
LAYOUTS = (
    ("pixel 32 px, patch 4 (the photo preset)", 32, "pixel", 4),
    ("pixel 64 px, patch 8", 64, "pixel", 8),
    ("pixel 64 px, patch 4", 64, "pixel", 4),
    ("latent 64 px (8×8×4), patch 2", 64, "latent", 2),
    ("latent 64 px (8×8×4), patch 1", 64, "latent", 1),
    ("pixel 128 px, patch 16", 128, "pixel", 16),
    ("pixel 128 px, patch 8", 128, "pixel", 8),
    ("latent 128 px (16×16×4), patch 2", 128, "latent", 2),
)
SD_VAE_SHAPE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    scaling_factor=0.18215,
)


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds (this process, all threads) of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def step_seconds(size: int, channels: int, patch: int, model: dict, batch: int, bf16: bool, repeats: int) -> float:
    """CPU seconds of one training step (forward, backward, AdamW) of a class-conditional DiT."""
    from dit.config import ModelConfig
    from dit.models import build_model

    cfg = ModelConfig(
        name=None, input_size=size, in_channels=channels, num_classes=10, learn_sigma=False, patch_size=patch, **model
    )
    net = build_model(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g)  # (B, C, S, S)
    t = torch.rand(batch, generator=g) * 1000  # (B,)
    y = torch.randint(0, 10, (batch,), generator=g)  # (B,)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x, t, y)  # (B, C, S, S)
        loss = (out.float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return cpu_seconds(step, repeats)


def vae_seconds(size: int, batch: int, repeats: int) -> tuple[float, float]:
    """(encode, decode) CPU seconds per image of the SD-shaped AutoencoderKL at ``size`` px (float32)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**SD_VAE_SHAPE).eval()  # type: ignore[arg-type]
    x = torch.rand(batch, 3, size, size) * 2 - 1  # (B, 3, S, S)
    z = torch.randn(batch, 4, size // 8, size // 8)  # (B, 4, S/8, S/8)
    with torch.no_grad():
        enc = cpu_seconds(lambda: vae.encode(x).latent_dist.sample(), repeats)
        dec = cpu_seconds(lambda: vae.decode(z).sample, repeats)
    return enc / batch, dec / batch


def measure(args: argparse.Namespace) -> dict:
    bf16 = args.precision == "bf16"
    model = dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads)
    rows = []
    for name, size, space, patch in LAYOUTS:
        side, channels = (size, 3) if space == "pixel" else (size // 8, 4)
        sec = step_seconds(side, channels, patch, model, args.batch_size, bf16, args.repeats)
        rows.append(
            {
                "layout": name,
                "image_size": size,
                "space": space,
                "patch": patch,
                "tokens": (side // patch) ** 2,
                "step_cpu_seconds": sec,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    vae = {}
    for size in args.vae_sizes:
        enc, dec = vae_seconds(size, args.vae_batch, args.repeats)
        vae[str(size)] = {"encode_cpu_seconds_per_image": enc, "decode_cpu_seconds_per_image": dec}
        print(size, json.dumps(vae[str(size)]), flush=True)
    return {"model": model, "batch_size": args.batch_size, "precision": args.precision, "steps": rows, "vae": vae}


def markdown(result: dict) -> str:
    lines = ["| layout | tokens | CPU-s per step (batch %d) |" % result["batch_size"], "|---|---|---|"]
    lines += [f"| {r['layout']} | {r['tokens']} | {r['step_cpu_seconds']:.3f} |" for r in result["steps"]]
    lines += ["", "| VAE (SD shape) at | encode CPU-s / image | decode CPU-s / image |", "|---|---|---|"]
    lines += [
        f"| {s} px | {v['encode_cpu_seconds_per_image']:.3f} | {v['decode_cpu_seconds_per_image']:.3f} |"
        for s, v in result["vae"].items()
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for large_images.json")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--num-heads", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="the DiT step's autocast")
    p.add_argument("--vae-sizes", type=int, nargs="*", default=[64, 128, 256])
    p.add_argument("--vae-batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    result = {
        "schema": SCHEMA_VERSION,
        "environment": environment(torch.device("cpu")),
        "config": vars(args),
        "threads": torch.get_num_threads(),
        **measure(args),
    }
    write_json(result, Path(args.out) / "large_images.json")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
