"""What the `dit sample` tests build for themselves: a tiny trained run, an official-format
DiT-S/8 file, a tiny 8×-downsampling AutoencoderKL, and the sample-command argv."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tests.helpers.train import make_image_folder, train_args

FAST = ["--num-sampling-steps", "3", "--no-progress", "--device", "cpu"]


def trained_run(root: Path, steps: int = 2) -> Path:
    """A pixel-space tiny model (3 classes, 8×8 images) trained ``steps`` steps; returns its checkpoint."""
    from dit.cli.main import main

    data = make_image_folder(root / "data")
    run = root / "run"
    assert main(train_args(data, run, "--max-steps", str(steps), "--lr", "5e-3", "--log-every", "1")) == 0
    return sorted((run / "checkpoints").glob("*.pt"))[-1]


def sample_argv(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--ckpt", str(ckpt), "--out", str(out), *FAST, *extra]


def save_vae8(folder: Path, seed: int = 0, scaling_factor: float = 0.25) -> Path:
    """A random 4-level AutoencoderKL (downsampling 8, 4 latent channels, like the SD VAE's shape)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
        scaling_factor=scaling_factor,
    )
    vae.save_pretrained(folder)
    return Path(folder)


def official_dit_s8(path: Path, layout: str = "bare", seed: int = 0) -> dict:
    """DiT-S/8 for 64×64 images (8×8 latents, 1000 classes) saved as an official file.

    ``layout``: ``"bare"`` (the released DiT-XL-2-256x256.pt form: a state dict) or ``"train"``
    (official train.py: model, ema, opt, args with different model and EMA weights).
    Returns the state dict that sampling must use (the EMA one for "train").
    """
    from dit.models import DiT_models

    torch.manual_seed(seed)
    model = DiT_models["DiT-S/8"](input_size=8, num_classes=1000)
    with (
        torch.no_grad()
    ):  # the zero-initialised final layer made random: outputs depend on x, t, y (cheap for 33M params)
        for p in model.final_layer.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    if layout == "bare":
        torch.save(ema, path)
        return ema
    raw = {k: v + 0.01 if v.is_floating_point() and k != "pos_embed" else v for k, v in ema.items()}
    args = argparse.Namespace(model="DiT-S/8", image_size=64, num_classes=1000, vae="ema")
    torch.save({"model": raw, "ema": ema, "opt": {}, "args": args}, path)
    return ema


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path) as f:
        return f["arr_0"], (f["arr_1"] if "arr_1" in f.files else None)
