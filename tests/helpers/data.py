"""Small things the data and VAE tests build for themselves (no downloads): a tiny random
AutoencoderKL saved with save_pretrained, and image folders of tiny PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

TINY_SCALE = 0.5  # deliberately not 0.18215: proves the factor is read from the config


def save_tiny_vae(folder: Path, seed: int = 0, scaling_factor: float = TINY_SCALE) -> Path:
    """A randomly initialised 2-level AutoencoderKL (downsample 2, 4 latent channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=scaling_factor,
    )
    # Random init gives a near-constant logvar; spread it so the std really varies per element.
    with torch.no_grad():
        vae.quant_conv.weight.mul_(3.0)
    vae.save_pretrained(folder)
    return Path(folder)


def random_image(rng: np.random.Generator, w: int, h: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)


def make_image_folder(
    root: Path, classes: Sequence[str] = ("cat", "dog"), per_class: int = 3, size=(12, 10), seed: int = 0
) -> Path:
    """root/<class>/<k>.png with random RGB content of ``size`` (w, h)."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            random_image(rng, *size).save(root / name / f"{k}.png")
    return Path(root)
