"""The bundled handwritten digits as an image-folder tree: real labelled data with no download.

``digits_8x8.npz`` beside this module holds the 1,797 scans of handwritten digits (8×8, 17 grey
levels 0..16, 10 classes) that scikit-learn ships as ``sklearn.datasets.load_digits`` (45 KB;
the tests check it equals scikit-learn's copy), so ``dit demo`` trains on real images on a fresh
machine without scikit-learn. The data is the test set of the UCI "Optical Recognition of
Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998), which UCI licenses under
CC BY 4.0 and scikit-learn redistributes under its BSD-3-Clause licence; see
``DIGITS_LICENCE`` below. :func:`export_digits` writes them as ``<root>/train/<digit>/<index>.png`` and
``<root>/test/<digit>/<index>.png`` (the layout :class:`dit.data.ImageFolder`, ``dit train``,
``dit train-classifier`` and ``dit eval`` read), resized to the side the model works at.

* Grey levels: value v ∈ 0..16 (16 = ink) becomes round(v · 255 / 16), white ink on black.
* Split: per class, a seeded ``held_out_fraction`` goes to ``test`` (stratified, so both splits
  keep the class balance), the rest to ``train``.
* Resizing: PIL bicubic from 8×8 (``image_size=8`` keeps the original pixels exactly).
* ``style="jitter"`` / ``"jitter-rgb"``: instead, ``copies`` harder renderings of every digit
  (random stroke thickness, pose, slant, noise; RGB: random ink and background colours) drawn by
  :func:`dit.data.digit_styles.render_digits` — closer to a real small dataset such as MNIST.
  The split is made on the original digits, so no held-out digit has a copy in ``train``.
* ``style="flat"``: the jittered strokes and pose with no pixel noise and a background of exact
  zeros (faint ink thresholded away), as real scans thresholded — what shows a sampler's grain.

The tree is written into a temporary folder and renamed into place, with a ``manifest.json``
recording how it was made; a second call with the same settings reuses it, another setting
refuses to overwrite it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dit.data.digit_styles import STYLES, render_digits
from dit.errors import UserError

DIGIT_LEVELS = 16  # stored pixel values are 0..16
DIGITS_FILE = Path(__file__).with_name("digits_8x8.npz")
DIGITS_LICENCE = (
    "UCI ML 'Optical Recognition of Handwritten Digits' (Alpaydin & Kaynak 1998), CC BY 4.0; "
    "as redistributed by scikit-learn (sklearn/datasets/data/digits.csv.gz, BSD-3-Clause)"
)
MANIFEST = "manifest.json"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DigitsExport:
    """Where an export lives and what it holds (also the content of its manifest)."""

    root: str
    image_size: int
    held_out_fraction: float
    seed: int
    num_train: int
    num_test: int
    num_classes: int = 10
    style: str = "plain"
    copies: int = 1

    @property
    def train_dir(self) -> Path:
        return Path(self.root) / "train"

    @property
    def test_dir(self) -> Path:
        return Path(self.root) / "test"


def load_digit_levels() -> tuple[np.ndarray, np.ndarray]:
    """The bundled data as stored: (grey levels uint8 (N, 8, 8) in 0..16, labels int64 (N,))."""
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        return f["images"].copy(), f["labels"].astype(np.int64)


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 8, 8) white ink on black, labels int64 (N,)) from the bundled digits."""
    levels, labels = load_digit_levels()
    images = np.rint(levels.astype(np.float64) * 255.0 / DIGIT_LEVELS).astype(np.uint8)  # (N, 8, 8)
    return images, labels


def resize_digits(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (N, h, w) → uint8 (N, S, S) by PIL bicubic (identity when the size already matches)."""
    from PIL import Image

    if images.shape[1:] == (image_size, image_size):
        return images.copy()
    out = [
        np.asarray(Image.fromarray(im, mode="L").resize((image_size, image_size), Image.Resampling.BICUBIC))
        for im in images
    ]
    return np.stack(out).astype(np.uint8)  # (N, S, S)


def split_indices(labels: np.ndarray, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified seeded split: (train indices, held-out indices), each sorted.

    Each class contributes round(fraction · its count) examples (at least one) to the held-out
    split, chosen by a permutation drawn from ``seed``.
    """
    if not 0 < held_out_fraction < 1:
        raise UserError(f"--held-out-fraction must be between 0 and 1, got {held_out_fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(len(members) - 1, max(1, int(round(held_out_fraction * len(members)))))
        held.append(rng.permutation(members)[:k])
    test = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _write_split(folder: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, copies: int = 1) -> None:
    """Images ``i·copies + k`` of every original index ``i`` → ``<label>/<i>.png`` (or ``<i>-<k>.png``)."""
    from PIL import Image

    for c in np.unique(labels):
        (folder / str(int(c))).mkdir(parents=True, exist_ok=True)
    for i in indices:
        for k in range(copies):
            name = f"{int(i):04d}.png" if copies == 1 else f"{int(i):04d}-{k}.png"
            image = images[int(i) * copies + k]
            Image.fromarray(image, mode="RGB" if image.ndim == 3 else "L").save(folder / str(int(labels[i])) / name)


def _fsync_tree(root: Path) -> None:
    """Flush every file of a freshly written tree to disk before it is renamed into place."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def render(images: np.ndarray, image_size: int, style: str = "plain", copies: int = 1, seed: int = 0) -> np.ndarray:
    """The digits as exported: uint8 (N·copies, S, S) grey or (N·copies, S, S, 3) for ``jitter-rgb``."""
    if style == "plain":
        if copies != 1:
            raise UserError("--copies needs a jittered style (plain digits would be identical copies)")
        return resize_digits(images, image_size)
    return render_digits(images, image_size, copies=copies, rgb=style == "jitter-rgb", seed=seed, flat=style == "flat")


def export_digits(
    root: str | os.PathLike,
    image_size: int = 16,
    held_out_fraction: float = 0.3,
    seed: int = 0,
    style: str = "plain",
    copies: int = 1,
) -> DigitsExport:
    """Write the digits to ``root/{train,test}/<digit>/<index>.png`` (see the module docstring).

    Returns what was written. Reuses an existing export made with the same settings; raises
    :class:`UserError` when ``root`` holds something else.
    """
    if image_size < 4:
        raise UserError(f"--image-size must be at least 4 pixels for digits, got {image_size}")
    if style not in STYLES:
        raise UserError(f"unknown digits style {style!r}; choose one of {', '.join(STYLES)}")
    if copies < 1:
        raise UserError(f"--copies must be at least 1, got {copies}")
    root = Path(root)
    images, labels = load_digits_uint8()
    train, test = split_indices(labels, held_out_fraction, seed)
    export = DigitsExport(
        str(root),
        int(image_size),
        float(held_out_fraction),
        int(seed),
        len(train) * copies,
        len(test) * copies,
        style=style,
        copies=int(copies),
    )
    if root.exists():
        return _reuse(root, export)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        drawn = render(images, image_size, style, copies, seed)  # (N·copies, S, S[, 3])
        _write_split(tmp / "train", drawn, labels, train, copies)
        _write_split(tmp / "test", drawn, labels, test, copies)
        (tmp / MANIFEST).write_text(json.dumps(asdict(export), indent=2) + "\n")
        _fsync_tree(tmp)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export


def _reuse(root: Path, export: DigitsExport) -> DigitsExport:
    try:
        found = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        raise UserError(
            f"{root} exists but is not a digits export (no readable {MANIFEST}); choose another folder"
        ) from None
    found = {**asdict(DigitsExport("", 0, 0.0, 0, 0, 0)), **found}  # manifests older than a field get its default
    if {k: v for k, v in found.items() if k != "root"} != {k: v for k, v in asdict(export).items() if k != "root"}:
        raise UserError(
            f"{root} holds digits exported with other settings ({found}); delete it or choose another folder"
        )
    return export
