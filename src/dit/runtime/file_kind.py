"""What a file is, from its first bytes, and the one-line reason a loader could not read it.

Why: a loader's own exception text is written for its developers: torch says "pop from empty
list" for a text file and "[enforce fail at inline_container.cc:180]" for an ``.npz``, and both
torch and numpy advise re-running with unsafe loading (``weights_only=False``,
``allow_pickle=True``), which would execute code from the file. A user needs to hear what the file
is ("a text file", "an .npz of numpy arrays") and what to pass instead, and never that advice.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Optional

_HEAD = 512
# Words of a library's message that give unsafe advice or only make sense to its developers.
_UNSAFE = re.compile(r"weights_only|allow_pickle|pickle\.load|unsafe|trust", re.IGNORECASE)
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x93NUMPY", "a .npy numpy array"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{", "a JSON or text file"),
)


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception:  # zipfile raises many kinds on damaged bytes (NotImplementedError, UnicodeDecodeError, ...)
        return "a damaged or truncated zip archive"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "a torch checkpoint"
    if names and all(n.endswith(".npy") for n in names):
        return "an .npz of numpy arrays"
    return "a zip archive"


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length (a plausible one: under 100 MB), then the JSON header's ``{``;
    a truncated file still starts so."""
    return len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def sniff(path: str | os.PathLike) -> str:
    """A short noun phrase for what ``path`` holds: "a text file", "a torch checkpoint", "a folder", …"""
    p = Path(path)
    if p.is_dir():
        return "a folder"
    try:
        with open(p, "rb") as f:
            head = f.read(_HEAD)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        return _zip_kind(p)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if _is_safetensors(head):
        return "a safetensors file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "a text file" if _is_text(head) else "a binary file of unknown format"


def refused_objects(error: BaseException) -> bool:
    """True when a safe loader refused the file because it holds Python objects other than arrays or tensors."""
    text = str(error)
    return (
        isinstance(error, pickle.UnpicklingError)
        and "Weights only load failed" in text
        or (isinstance(error, ValueError) and "allow_pickle" in text)
    )


def excerpt(error: BaseException, limit: int = 80) -> str:
    """The first line of ``error``'s message, cut at a word boundary, or "" when it gives unsafe advice."""
    text = (str(error).strip().splitlines() or [""])[0].strip()
    if not text or _UNSAFE.search(text):
        return ""
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text


TORCH_KINDS = ("a torch checkpoint", "a Python pickle")
NPZ_KINDS = ("an .npz of numpy arrays",)
_DAMAGED = "a damaged or truncated zip archive"


def why_unreadable(
    path: str | os.PathLike, expected: str, error: Optional[BaseException] = None, formats: tuple[str, ...] = ()
) -> str:
    """Why ``path`` is not ``expected`` (e.g. "a checkpoint") as a clause: "it is a text file, not a checkpoint".

    ``formats``: the :func:`sniff` kinds of a right file, which failed to load only because damaged.
    Files that would run code when unpickled get the same refusal whatever the loader said.
    """
    kind = sniff(path)
    if error is not None and refused_objects(error) and kind not in ("a text file", "a JSON or text file"):
        return "it holds Python objects other than tensors and arrays, which could run code when loaded: refused"
    if kind in formats or kind == _DAMAGED:
        detail = excerpt(error) if error is not None else ""
        return "it is truncated or damaged" + (f" ({detail})" if detail else "")
    return f"it is {kind}, not {expected}"
