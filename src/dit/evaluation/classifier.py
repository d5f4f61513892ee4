"""A small CNN classifier for small labelled images (digits, 8-32 px) and its training.

Why: Inception features of 8×8 digits upscaled to 299 px mean little. For such data ``dit``
trains this classifier on real labelled images (``dit train-classifier``) and ``dit eval
--features classifier:PATH`` uses it like the Inception network: its penultimate layer gives
the ``pool`` features (FID, precision/recall), a pooled map of its last convolution the
``spatial`` features (sFID), and its logits the Inception Score and the class accuracy of
conditional samples.

Files: weights as safetensors whose metadata holds the architecture (``config``), so the file
alone rebuilds the network; a JSON beside it (same stem) repeats the config with the training
result for people to read.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dit.errors import UserError
from dit.evaluation.io import load_images, write_json
from dit.runtime.checkpoint import export_safetensors
from dit.runtime.distributed import resolve_device

GRID = 4  # the last conv map is average-pooled to 4×4; the head reads it flattened
SPATIAL_CHANNELS = 8  # the spatial features: that grid's first 8 channels → 128 dims


@dataclass
class ClassifierArch:
    """What rebuilds a :class:`SmallClassifier` (stored in the weights file's metadata)."""

    num_classes: int
    image_size: int
    width: int = 32
    feature_dim: int = 128


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallClassifier(nn.Module):
    """Two conv stages (w, 2w channels; one 2× max pool) → 4×4 average grid → features → logits.

    The head sees a coarse 4×4 grid rather than a global average so that where a stroke is
    (top or bottom of a digit) is not lost.
    """

    def __init__(self, arch: ClassifierArch):
        super().__init__()
        self.arch = arch
        w = arch.width
        self.stage1 = nn.Sequential(_conv(3, w), _conv(w, w))
        self.stage2 = nn.Sequential(_conv(w, 2 * w), _conv(2 * w, 2 * w))
        self.features = nn.Sequential(nn.Linear(2 * w * GRID * GRID, arch.feature_dim), nn.ReLU())
        self.head = nn.Linear(arch.feature_dim, arch.num_classes)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) → float (N, 3, S, S) in [-1, 1], resized to the trained size S."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, H, W)
        s = self.arch.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward_float(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Preprocessed images (N, 3, S, S) → dict(pool (N, F), spatial (N, 128), logits (N, K))."""
        h = F.max_pool2d(self.stage1(x), 2)  # (N, w, S/2, S/2)
        h = self.stage2(h)  # (N, 2w, S/2, S/2)
        grid = F.adaptive_avg_pool2d(h, GRID)  # (N, 2w, 4, 4)
        spatial = grid[:, :SPATIAL_CHANNELS]  # (N, 8, 4, 4)
        pool = self.features(grid.flatten(1))  # (N, F)
        return {"pool": pool, "spatial": spatial.permute(0, 2, 3, 1).flatten(1), "logits": self.head(pool)}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 images (N, H, W, 3) → the three feature arrays (the FeatureExtractor contract)."""
        return self.forward_float(self.preprocess(images))


def save_classifier(model: SmallClassifier, path: str | os.PathLike, info: Optional[dict] = None) -> Path:
    """Weights (safetensors, architecture in metadata) + a readable JSON beside; both atomic."""
    path = Path(path)
    arch = vars(model.arch)
    export_safetensors(model.state_dict(), path, metadata={"format": "dit-classifier", "config": arch})
    write_json(path.with_suffix(".json"), {"config": arch, **(info or {})})
    return path


def load_classifier(path: str | os.PathLike) -> SmallClassifier:
    """Rebuild a classifier from its safetensors file alone; bad files raise UserError."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UserError(f"cannot read classifier {path}: {e}") from None
    if meta.get("format") != "dit-classifier":
        raise UserError(f"{path} is not a classifier written by `dit train-classifier` (no dit-classifier metadata)")
    model = SmallClassifier(ClassifierArch(**json.loads(meta["config"])))
    model.load_state_dict(state)
    return model.eval()


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n) into (train, held-out) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    return perm[n_val:], perm[:n_val]


def _shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (replicate padding), one per image."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4, mode="replicate")  # (N, C, H+2m, W+2m)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(model: SmallClassifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of images whose arg-max class equals the label."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size]).to(device)
        pred = model(x)["logits"].argmax(1).cpu().numpy()
        correct += int((pred == labels[s : s + batch_size]).sum())
    return correct / max(1, len(images))


def train_classifier(cfg, progress: bool = False) -> dict:
    """Train a :class:`SmallClassifier` on ``cfg.data_path`` and save it to ``cfg.out``.

    ``cfg`` is a :class:`dit.config.ClassifierTrainConfig`. A seeded ``val_fraction`` of the
    data is held out; returns a dict with held-out and training accuracy, sizes and the path.
    AdamW with a cosine learning-rate decay and random shifts of 1/8 of the image side.
    """
    cfg.validate()
    data = load_images(cfg.data_path)
    if data.labels is None:
        raise UserError(f"{cfg.data_path} has no labels; use an .npz with arr_1 or one sub-folder per class")
    images, labels = data.images, data.labels  # (N, H, W, 3), (N,)
    if labels.min() < 0:
        raise UserError(f"{cfg.data_path}: labels must be >= 0")
    tr, va = _split(len(images), cfg.val_fraction, cfg.seed)
    size = cfg.image_size or images.shape[1]
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)  # a bad --device is a one-line error, not a traceback
    arch = ClassifierArch(num_classes=int(labels.max()) + 1, image_size=int(size), width=cfg.width)
    model = SmallClassifier(arch).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch))
    g = torch.Generator().manual_seed(cfg.seed)
    x_all = model.preprocess(torch.from_numpy(images[tr]))  # (Ntr, 3, S, S), preprocessed once
    y_all = torch.from_numpy(labels[tr])
    bar = None
    if progress:
        from dit.runtime.progress import progress as with_progress

        bar = with_progress(range(cfg.epochs), desc="train-classifier", unit="epoch")
    for _ in bar if bar is not None else range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(tr), generator=g).split(cfg.batch_size):
            x = _shift(x_all[idx], max(1, size // 8), g).to(device)
            loss = F.cross_entropy(model.forward_float(x)["logits"], y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.cpu().eval()
    result = {
        "val_accuracy": accuracy(model, images[va], labels[va]) if len(va) else None,
        "train_accuracy": accuracy(model, images[tr], labels[tr]),
        "num_train": int(len(tr)),
        "num_val": int(len(va)),
        "data_path": str(cfg.data_path),
        "epochs": cfg.epochs,
    }
    save_classifier(model, cfg.out, info=result)
    return {**result, "path": str(cfg.out)}
