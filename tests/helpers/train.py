"""Shared set-up of the training integration tests: a generated image folder and tiny-model flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dit.runtime.checkpoint import load_checkpoint


# draw_step_randomness's arguments for a small step whose global batch splits over 1 or 2 ranks.
STEP_DRAW_ARGS = dict(
    seed=5,
    step=9,
    global_batch=4,
    latent_shape=(3, 8, 8),
    num_timesteps=1000,
    drop_prob=0.5,
    flip=True,
    device=torch.device("cpu"),
)

TINY_MODEL = ["--depth", "2", "--hidden-size", "32", "--num-heads", "2", "--patch-size", "2"]


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 10, seed: int = 0) -> Path:
    """``classes`` sub-folders of ``per_class`` RGB PNGs whose colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 60 + c * 80).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def train_args(data: Path, run: Path, *extra: str, batch: int = 4) -> list[str]:
    """`dit train` argv for the tiny pixel-space model on ``data`` writing to ``run``."""
    return [
        "train",
        "--data-path",
        str(data),
        "--image-size",
        "8",
        "--vae",
        "none",
        *TINY_MODEL,
        "--global-batch-size",
        str(batch),
        "--results-dir",
        str(run),
        "--num-workers",
        "0",
        "--lr",
        "1e-3",
        "--seed",
        "7",
        *extra,
    ]


def final_state(run: Path) -> dict:
    """The newest checkpoint of a run folder."""
    ckpts = sorted((run / "checkpoints").glob("*.pt"))
    return load_checkpoint(ckpts[-1])


def assert_states_close(a: dict, b: dict, atol: float) -> float:
    """Model, EMA and optimiser tensors of two checkpoints agree within ``atol``; returns the max gap."""
    worst = 0.0
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            gap = (a[part][k].double() - b[part][k].double()).abs().max().item() if a[part][k].numel() else 0.0
            worst = max(worst, gap)
            assert gap <= atol, f"{part}.{k} differs by {gap}"
    for i, s in a["opt"]["state"].items():
        for k, v in s.items():
            if torch.is_tensor(v):
                gap = (v.double() - b["opt"]["state"][i][k].double()).abs().max().item()
                worst = max(worst, gap)
                assert gap <= atol, f"opt.{i}.{k} differs by {gap}"
    return worst
