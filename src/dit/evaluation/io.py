"""Files of the evaluation: image sets, cached reference features and protocol cards.

* Image sets are an ``.npz`` (``arr_0`` (N, H, W, 3) uint8, optional ``arr_1`` (N,) labels, the
  format of ``dit sample`` and of ADM's reference batches) or a folder of images: flat (no
  labels) or one sub-folder per class (labels = index of the sorted sub-folder names).
* Reference features are cached in an ``.npz`` keyed by the reference's content hash and the
  extractor's name, beside the reference when that folder is writable, else in the cache folder.
* A protocol card is the JSON the sampler writes beside its samples; ``dit eval`` copies it.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write, atomic_write_json
from dit.runtime.file_kind import NPZ_KINDS, why_unreadable
from dit.runtime.hashing import sha256_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# What np.load / zipfile raise on a damaged, truncated or foreign .npz (found by tests/faults).
NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)
_CACHE_VERSION = "v1"
_WANT_IMAGES = "pass an .npz of arr_0 images (N, H, W, 3) uint8 or a folder of images"


@dataclass
class ImageSet:
    """uint8 images (N, H, W, 3) and, when the file carries them, int64 labels (N,)."""

    images: np.ndarray
    labels: Optional[np.ndarray] = None

    def require_labels(self, source: str | os.PathLike) -> np.ndarray:
        """The labels; a UserError naming ``source`` when the file carries none."""
        if self.labels is None:
            raise UserError(f"{source} has no labels (arr_1); this step needs one class label per image")
        return self.labels


def _as_rgb_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    """Validate an image array; grey (N, H, W) or (N, H, W, 1) is repeated to 3 channels."""
    if arr.dtype != np.uint8:
        raise UserError(
            f"{source}: images must be uint8 in [0, 255], got {arr.dtype}; convert with (x * "
            f"255).round().astype(np.uint8)"
        )
    if arr.ndim == 3:
        arr = arr[..., None]  # (N, H, W, 1)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or len(arr) == 0:
        raise UserError(f"{source}: images must have shape (N, H, W, 3) with N > 0, got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)  # (N, H, W, 3)
    return arr


def _as_labels(arr: np.ndarray, n: int, source: str) -> np.ndarray:
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"{source}: labels arr_1 must be integers of shape ({n},), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def _load_npz(path: Path) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f.files:
                raise UserError(
                    f"{path}: no arr_0 in the .npz (keys {f.files}); expected arr_0 images and optional arr_1 labels"
                )
            images = _as_rgb_uint8(f["arr_0"], str(path))
            labels = _as_labels(f["arr_1"], len(images), str(path)) if "arr_1" in f.files else None
    except NPZ_ERRORS as e:
        why = why_unreadable(path, "an .npz", e, NPZ_KINDS)
        raise UserError(f"cannot read {path} as .npz: {why}; {_WANT_IMAGES}") from None
    return ImageSet(images, labels)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
        raise UserError(f"cannot read image {path} ({type(e).__name__}: {e}); fix or remove the file") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_folder(path: Path) -> ImageSet:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and _image_files(p))
    files = _image_files(path)
    if files and classes:
        raise UserError(f"{path}: mixes images and class sub-folders; use one layout")
    if classes:
        per_class = [_image_files(c) for c in classes]
        files = [f for fs in per_class for f in fs]
        labels = np.concatenate([np.full(len(fs), i, np.int64) for i, fs in enumerate(per_class)])
    elif files:
        labels = None
    else:
        raise UserError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder or its class sub-folders")
    arrays = [_read_image(f) for f in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UserError(f"{path}: images differ in size {sorted(shapes)[:3]}; resize them to one size first")
    return ImageSet(np.stack(arrays), labels)  # (N, H, W, 3)


def require_image_set(path: str | os.PathLike, role: str = "") -> Path:
    """``path`` if it is a folder or an ``.npz`` file; else a one-line UserError naming ``role`` (e.g. "reference")."""
    p = Path(path)
    if p.is_dir() or (p.is_file() and p.suffix == ".npz"):
        return p
    name = f"{role} {p}" if role else str(p)
    if not p.exists():
        raise UserError(f"{name} does not exist; pass an .npz of arr_0 images or a folder of images")
    raise UserError(f"{name}: expected an .npz (arr_0 (N, H, W, 3) uint8) or a folder of images")


def load_images(path: str | os.PathLike) -> ImageSet:
    """Images (and labels if present) from an ``.npz`` or a folder; bad input raises UserError."""
    p = require_image_set(path)
    return _load_folder(p) if p.is_dir() else _load_npz(p)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``f``, leaving it at the data."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    return fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)


def _npz_member_batches(path: Path, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of ``arr_0`` read straight from the zip member, never the whole array at once.

    Works for ``np.savez`` and ``np.savez_compressed`` files (zipfile decompresses as it reads),
    as ADM's evaluator's streaming reader does, so 50K large samples need not fit in memory.
    """
    try:
        with zipfile.ZipFile(path) as zf, zf.open("arr_0.npy") as f:
            shape, fortran, dtype = _npy_header(f)
            if fortran or dtype != np.uint8 or len(shape) not in (3, 4):
                return  # the caller validates through the in-memory path
            per_image = int(np.prod(shape[1:]))
            for start in range(0, shape[0], batch_size):
                n = min(batch_size, shape[0] - start)
                buf = f.read(n * per_image)
                yield _as_rgb_uint8(np.frombuffer(buf, np.uint8).reshape((n, *shape[1:])), str(path))
    except NPZ_ERRORS as e:  # a member torn or damaged past its header shows only while reading
        why = why_unreadable(path, "an .npz", e, NPZ_KINDS)
        raise UserError(f"cannot read {path} as .npz: {why}; {_WANT_IMAGES}") from None


def image_batches(path: str | os.PathLike, batch_size: int) -> tuple[int, Iterator[np.ndarray], Optional[np.ndarray]]:
    """(number of images, iterator of uint8 (B, H, W, 3) batches, labels or None).

    An uncompressed or compressed ``.npz`` of uint8 images is streamed from disk; anything else
    (folders, arrays that need validation errors) goes through :func:`load_images`.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                header_ok = "arr_0" in f.files
                labels = f["arr_1"] if "arr_1" in f.files else None
            if header_ok:
                with zipfile.ZipFile(p) as zf, zf.open("arr_0.npy") as fh:
                    shape, fortran, dtype = _npy_header(fh)
                if (
                    not fortran
                    and dtype == np.uint8
                    and len(shape) in (3, 4)
                    and shape[0] > 0
                    and (len(shape) == 3 or shape[-1] in (1, 3))
                ):
                    if labels is not None:
                        labels = _as_labels(labels, shape[0], str(p))
                    return shape[0], _npz_member_batches(p, batch_size), labels
        except NPZ_ERRORS:
            pass  # fall through: load_images gives the precise error
    s = load_images(p)
    return len(s.images), (s.images[i : i + batch_size] for i in range(0, len(s.images), batch_size)), s.labels


def content_digest(path: str | os.PathLike, length: int = 16) -> str:
    """SHA-256 of a file, or of a folder's image files (relative names and bytes, sorted)."""
    try:
        return sha256_of(path, suffixes=IMAGE_SUFFIXES)[:length]
    except OSError as e:  # missing, unreadable (permissions), a folder's file vanishing mid-walk
        why = e.strerror or type(e).__name__
        raise UserError(f"cannot read {path} ({why}); check it exists and is readable") from None


def cache_dir() -> Path:
    """The folder for weights and cached statistics: ``$DIT_CACHE`` or ``~/.cache/dit``."""
    return Path(os.environ.get("DIT_CACHE") or Path.home() / ".cache" / "dit")


def stats_cache_paths(reference: str | os.PathLike, extractor_name: str) -> list[Path]:
    """Where cached reference features may live, in order: beside the reference, the cache folder."""
    ref = Path(reference).resolve()
    name = f"{ref.name}.{content_digest(ref)}.{extractor_name}.{_CACHE_VERSION}.features.npz"
    return [ref.parent / name, cache_dir() / "stats" / name]


def load_cached_features(reference: str | os.PathLike, extractor_name: str) -> Optional[dict[str, np.ndarray]]:
    """The cached reference arrays if a cache file exists and reads, else None."""
    for p in stats_cache_paths(reference, extractor_name):
        if p.is_file():
            try:
                with np.load(p, allow_pickle=False) as f:
                    return {k: f[k] for k in f.files}
            except NPZ_ERRORS:
                continue  # unreadable cache: recompute
    return None


def save_cached_features(
    reference: str | os.PathLike, extractor_name: str, arrays: dict[str, np.ndarray]
) -> Optional[Path]:
    """Write the cache atomically at the first writable location; None if none is writable."""
    for p in stats_cache_paths(reference, extractor_name):
        try:
            return atomic_write(p, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]  # numpy stub: **kw vs allow_pickle
        except UserError:
            continue
    return None


def protocol_card_path(samples: str | os.PathLike) -> Optional[Path]:
    """The sampler's protocol card for ``samples``, if one exists.

    Looked up as ``<samples>.protocol.json`` (what ``dit sample`` writes), then
    ``<samples without suffix>.protocol.json``, ``<samples>.json`` and, for a folder,
    ``<folder>/protocol.json``.
    """
    p = Path(samples)
    candidates = [
        p.with_name(p.name + ".protocol.json"),
        p.with_suffix(".protocol.json"),
        p.with_name(p.name + ".json"),
        p / "protocol.json",
    ]
    return next((c for c in candidates if c.is_file()), None)


def read_protocol_card(samples: str | os.PathLike) -> Optional[dict]:
    """The protocol card's content (with its path under ``"path"``), or None if there is none."""
    p = protocol_card_path(samples)
    if p is None:
        return None
    try:
        card = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"protocol card {p} is not valid JSON: {e}") from None
    return {"path": str(p), **card} if isinstance(card, dict) else {"path": str(p), "card": card}


def write_json(path: str | os.PathLike, obj: dict) -> Path:
    """Atomically write ``obj`` as indented JSON (:func:`dit.runtime.checkpoint.atomic_write_json`)."""
    return atomic_write_json(path, obj)
