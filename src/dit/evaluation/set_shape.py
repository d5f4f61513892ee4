"""The stored image size and channel count of a sample set, to warn when two sets differ.

``dit eval`` resizes both sets to the feature network's input and turns grey into RGB, so
samples of 32×32 scored against a 256×256 reference (or grey against colour) give numbers
without complaint; they measure the mismatch as much as the model. Reading the shape costs an
``.npz`` header or one image, never the whole set.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def stored_shape(path: str | os.PathLike) -> Optional[tuple[int, int, int]]:
    """(height, width, channels) as stored: an ``.npz``'s ``arr_0`` header or a folder's first image.

    None when it cannot be read cheaply; the readers of ``dit eval`` report such files themselves.
    """
    p = Path(path)
    try:
        if p.is_file() and p.suffix == ".npz":
            with zipfile.ZipFile(p) as zf, zf.open("arr_0.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read(f)[0]  # (N, H, W) grey or (N, H, W, C)
            if len(shape) == 3:
                return int(shape[1]), int(shape[2]), 1
            if len(shape) == 4:
                return int(shape[1]), int(shape[2]), int(shape[3])
            return None
        if p.is_dir():
            from PIL import Image

            first = next((f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), None)
            if first is None:
                return None
            with Image.open(first) as im:
                return im.height, im.width, len(im.getbands())
    except Exception:  # a damaged file: left to the readers, which name the problem
        return None
    return None


def _describe(shape: tuple[int, int, int]) -> str:
    h, w, c = shape
    return f"{h}x{w} with {c} channel{'s' if c != 1 else ''}"


def shape_mismatch(samples: str | os.PathLike, reference: str | os.PathLike) -> Optional[str]:
    """A warning when the two sets differ in image size or channel count (None when they agree)."""
    a, b = stored_shape(samples), stored_shape(reference)
    if a is None or b is None or a == b:
        return None
    differs = (("image size", a[:2] != b[:2]), ("channel count", a[2] != b[2]))
    what = " and ".join(name for name, differ in differs if differ)
    return (
        f"the samples are {_describe(a)} but the reference is {_describe(b)}; both are resized to the feature "
        f"network's input, so the scores also measure the {what} mismatch — check --image-size or the reference"
    )
