"""A synthetic 4-class task the small classifier learns in seconds, and a classifier trained on it
through `dit train-classifier` (the feature network of the evaluation tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dit.cli.main import main


def bars_dataset(n_per_class: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8×8 images of 4 classes (a bright bar at the top, bottom, left or right) on noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    x = rng.integers(0, 80, size=(len(labels), 8, 8, 3)).astype(np.uint8)  # (N, 8, 8, 3)
    for i, c in enumerate(labels):
        sl = [(1, slice(None)), (6, slice(None)), (slice(None), 1), (slice(None), 6)][c]
        x[i][sl] = 230
    return x, labels


def cli_trained_classifier(folder: Path, n_per_class: int, epochs: int) -> Path:
    """Train a width-8 classifier on ``bars_dataset(n_per_class, seed=0)`` with the CLI; its file."""
    x, y = bars_dataset(n_per_class=n_per_class, seed=0)
    np.savez(folder / "train.npz", x, y)
    out = folder / "clf.safetensors"
    argv = ["train-classifier", "--data-path", str(folder / "train.npz"), "--out", str(out), "--width", "8"]
    assert main([*argv, "--epochs", str(epochs), "--batch-size", "32"]) == 0
    return out
