"""Content hashes of files and folders (checkpoint ids in protocol cards, cache keys)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Optional


def sha256_of(path: str | os.PathLike, suffixes: Optional[Iterable[str]] = None) -> str:
    """Full SHA-256 hex digest of a file, or of a folder: every file's relative name and bytes in
    sorted order (only files whose lower-cased suffix is in ``suffixes``, when given). Streams in
    4 MiB chunks, so a 50K-image ``.npz`` or a multi-GB checkpoint never sits in memory."""
    p = Path(path)
    keep = None if suffixes is None else {s.lower() for s in suffixes}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and (keep is None or f.suffix.lower() in keep))
    else:
        files = [p]
    h = hashlib.sha256()
    for file in files:
        if p.is_dir():
            h.update(str(file.relative_to(p)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()
