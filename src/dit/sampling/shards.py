"""Shards of a sample file: one atomic ``<out>.shards/<start>-<stop>.npz`` per finished chunk.

A rerun skips the shards already there, after checking that they were made with the same
settings (``settings.json`` beside them); rank 0 merges them in index order.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write_json
from dit.runtime.distributed import DistInfo, barrier
from dit.sampling.card import settings_mismatch

SETTINGS_FILE = "settings.json"


def shard_dir(out: str | Path) -> Path:
    """``<out>.shards/``: one ``.npz`` per finished chunk."""
    p = Path(out)
    return p.with_name(p.name + ".shards")


def shard_path(folder: Path, chunk: range) -> Path:
    return folder / f"{chunk.start:08d}-{chunk.stop:08d}.npz"


def shard_complete(path: Path, chunk: range, image_shape: tuple[int, int]) -> bool:
    """A shard that exists, opens and holds ``len(chunk)`` images of the right size."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return "arr_0" in f.files and f["arr_0"].shape == (len(chunk), *image_shape, 3)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # torn or foreign file
        return False


def prepare_shards(folder: Path, settings: dict, info: DistInfo) -> None:
    """Every rank checks existing shards' settings; then rank 0 records ours (resume safety)."""
    record = folder / SETTINGS_FILE
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except (OSError, ValueError):
            old = None
        diff = settings_mismatch(old, settings) if isinstance(old, dict) else ["(unreadable)"]
        if diff:
            raise UserError(
                f"{folder} holds shards of another run (settings differ: {', '.join(diff)}); "
                "rerun with the same settings to resume, or delete that folder to start over"
            )
    barrier(info)
    if info.is_main and not record.is_file():
        atomic_write_json(record, settings)
    barrier(info)


def merge_shards(folder: Path, chunks: Sequence[range], image_shape: tuple[int, int]) -> np.ndarray:
    """All shards in index order as one uint8 (N, H, W, 3) array (filled in place, one copy)."""
    n = chunks[-1].stop if chunks else 0
    images = np.empty((n, *image_shape, 3), dtype=np.uint8)
    for c in chunks:
        path = shard_path(folder, c)
        if not shard_complete(path, c, image_shape):
            raise UserError(f"shard {path} is missing or damaged; rerun the same command to regenerate it")
        with np.load(path, allow_pickle=False) as f:
            images[c.start : c.stop] = f["arr_0"]
    return images
