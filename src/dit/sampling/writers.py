"""Sample files: images in [-1, 1] → uint8, a PNG grid, an ``.npz`` of images and labels.

* :func:`to_uint8` is the one conversion from decoder output to pixels. It is the official DiT
  ``sample_ddp.py`` rule, ``clamp(127.5·x + 128, 0, 255)`` truncated to uint8 (that is, round
  half up of 127.5·(x + 1)), the conversion behind the published FID numbers.
* :func:`grid_layout` picks one row per class when the labels are balanced over a few classes,
  else a near-square grid in sample order; :func:`make_grid` tiles uint8 images.
* :func:`write_png` and :func:`write_npz` write atomically (temp file, fsync, rename);
  :func:`write_png_folder` writes one PNG per sample (what clean-fid and torch-fidelity read)
  into a temporary folder renamed into place at the end.
  ``.npz`` holds ``arr_0`` (N, H, W, 3) uint8 and ``arr_1`` (N,) int64 labels (ADM's format);
  unconditional samples have no ``arr_1``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dit.runtime.checkpoint import atomic_write
from dit.runtime.outputs import refuse_existing, replace_folder

MAX_CLASS_ROWS = 32
"""A grid has one row per class only up to this many classes (beyond it rows become too thin)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [-1, 1] → (N, H, W, 3) uint8 on the CPU (official DiT rounding)."""
    x = torch.clamp(127.5 * images.float() + 128.0, 0, 255)  # (N, 3, H, W)
    return x.permute(0, 2, 3, 1).to("cpu", dtype=torch.uint8)  # (N, H, W, 3), truncation = floor


def grid_layout(labels: Optional[Sequence[int]], n: int) -> tuple[list[int], int]:
    """(order, columns): the sample indices in grid order and the number of grid columns.

    Labels that each appear equally often (at least twice), over 2..MAX_CLASS_ROWS distinct
    classes, give one row per class (classes in order of first appearance, samples in index order
    within a row). Anything else (no labels, unbalanced, one class, many classes, one sample per
    class) gives a near-square grid in sample order.
    """
    if labels is not None and n > 0:
        labels = [int(v) for v in labels]
        classes = list(dict.fromkeys(labels))  # first-appearance order
        counts = {c: labels.count(c) for c in classes}
        if 2 <= len(classes) <= MAX_CLASS_ROWS and len(set(counts.values())) == 1 and counts[classes[0]] >= 2:
            order = [i for c in classes for i in range(n) if labels[i] == c]
            return order, counts[classes[0]]
    return list(range(n)), max(1, math.ceil(math.sqrt(n)))


def make_grid(images: np.ndarray, columns: int, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 (N, H, W, 3) into one (rows·(H+p)+p, cols·(W+p)+p, 3) image, row-major."""
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    p = padding
    grid = np.full((rows * (h + p) + p, columns * (w + p) + p, c), pad_value, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, columns)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[top : top + h, left : left + w] = images[k]
    return grid


def grid_image(images: np.ndarray, labels: Optional[Sequence[int]] = None, padding: int = 2) -> np.ndarray:
    """The grid a PNG output holds: rows by class when labels allow (see :func:`grid_layout`)."""
    order, columns = grid_layout(labels, len(images))
    return make_grid(images[order], columns, padding)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Atomically write uint8 (H, W, 3) as a PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    blob = buf.getvalue()
    return atomic_write(path, lambda f: f.write(blob))


def write_npz(path: str | os.PathLike, images: np.ndarray, labels: Optional[np.ndarray] = None) -> Path:
    """Atomically write ``arr_0`` (N, H, W, 3) uint8 and, when given, ``arr_1`` (N,) int64."""
    arrays = {"arr_0": np.ascontiguousarray(images, dtype=np.uint8)}
    if labels is not None:
        arrays["arr_1"] = np.asarray(labels, dtype=np.int64)
    return atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]  # numpy stub: **kw vs allow_pickle


def png_name(index: int, label: Optional[int]) -> str:
    """``000123.png``, or ``000123_class207.png`` for a labelled sample (sorting keeps sample order)."""
    return f"{index:06d}.png" if label is None else f"{index:06d}_class{int(label)}.png"


def is_folder_output(path: str | os.PathLike) -> bool:
    """``--out DIR/`` (a trailing slash) or an existing folder: one PNG per sample."""
    return str(path).endswith(("/", os.sep)) or Path(path).is_dir()


def write_png_folder(
    folder: str | os.PathLike, images: np.ndarray, labels: Optional[np.ndarray], overwrite: bool = False
) -> Path:
    """One PNG per sample in ``folder`` (flat, names from :func:`png_name`).

    Written into ``.<folder>.tmp/`` beside it and renamed into place, so the folder never holds
    a partial set; an existing folder must be empty (mixing two runs' images would spoil an FID)
    unless ``overwrite``, which replaces it whole (:func:`dit.runtime.outputs.replace_folder`).
    """
    import shutil
    import tempfile

    folder = Path(folder)
    refuse_existing(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for i, image in enumerate(images):
            write_png(tmp / png_name(i, None if labels is None else labels[i]), image)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # an empty folder: nothing to keep
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_samples(
    path: str | os.PathLike, images: np.ndarray, labels: Optional[np.ndarray], overwrite: bool = False
) -> Path:
    """``DIR/`` → one PNG per sample, ``.png`` → a grid, ``.npz`` → the arrays (``dit sample``'s outputs).

    Files are replaced atomically; a non-empty folder only with ``overwrite``."""
    if is_folder_output(path):
        return write_png_folder(path, images, labels, overwrite)
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return write_png(path, grid_image(images, None if labels is None else labels.tolist()))
    if suffix == ".npz":
        return write_npz(path, images, labels)
    raise ValueError(f"unsupported sample file suffix {suffix!r}")
