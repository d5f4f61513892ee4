"""Checkpoint files that are never half-written, load without executing code, and sort by step.

Knows nothing about DiT: it stores any dict of tensors/plain values.

* ``save_checkpoint`` writes to a temp file in the same folder, fsyncs it, renames it over the
  target and fsyncs the folder, so a crash leaves either the old file or the new one, never a
  torn one (a stray ``*.tmp`` is ignored by every reader here).
* ``load_checkpoint`` uses ``torch.load(weights_only=True)``: a pickle that would run code is
  refused, and a truncated or foreign file becomes a one-line ``UserError``.
* Names are ``<step:07d>.pt``; ``latest_checkpoint`` parses the step (never mtime or size).
* Beside each checkpoint, ``<step:07d>.pt.sha256`` holds its SHA-256 in ``sha256sum`` format
  (``sha256sum -c`` checks it), written after the checkpoint. ``newest_intact_checkpoint``
  walks back from the newest one past files whose bytes no longer match (a disk or copy that
  damaged them after the save) or that do not load; ``verify_checkpoint`` refuses one such file.

Test hook: with ``DIT_FAULT_PAUSE_BEFORE_RENAME=<glob>`` in the environment, ``atomic_write`` of a
file whose name matches the glob (e.g. ``0000004.pt``) announces on stderr that the temp file is
written and sleeps a minute before the rename, so a test can kill the process inside that
window deterministically (tests/faults/test_kill.py).
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from dit.errors import UserError
from dit.runtime.file_kind import TORCH_KINDS, why_unreadable
from dit.runtime.hashing import sha256_of

CKPT_SUFFIX = ".pt"
EMA_SUFFIX = ".ema.safetensors"
CHECKSUM_SUFFIX = ".sha256"
_NAME = re.compile(r"^(\d+)\.pt$")
PAUSE_ENV = "DIT_FAULT_PAUSE_BEFORE_RENAME"


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    """``<dir>/<step:07d>.pt`` (the official scripts' naming)."""
    return Path(directory) / f"{int(step):07d}{CKPT_SUFFIX}"


def ema_export_path(ckpt: str | os.PathLike) -> Path:
    """The safetensors file of EMA weights that sits beside checkpoint ``ckpt``."""
    p = Path(ckpt)
    return p.with_name(p.name[: -len(CKPT_SUFFIX)] + EMA_SUFFIX)


def checksum_path(ckpt: str | os.PathLike) -> Path:
    """The ``sha256sum``-format file that sits beside checkpoint ``ckpt``."""
    p = Path(ckpt)
    return p.with_name(p.name + CHECKSUM_SUFFIX)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fault_pause(tmp: str, path: Path) -> None:
    """The test hook of the module docstring (a no-op unless PAUSE_ENV is set)."""
    pattern = os.environ.get(PAUSE_ENV)
    if pattern and fnmatch.fnmatch(path.name, pattern):
        print(f"atomic_write: paused before renaming {tmp} -> {path}", file=sys.stderr, flush=True)
        time.sleep(60.0)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it and rename it to ``path``.

    On any failure (full disk, unwritable folder, exception in ``write``) the temp file is
    removed, ``path`` keeps its previous content, and a ``UserError`` says what happened.
    """
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; check the folder exists and is writable") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _fault_pause(tmp, path)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UserError(
                f"cannot write {path}: {e.strerror or e}; free space or fix permissions (the previous file is kept)"
            ) from e
        raise
    _fsync_dir(directory)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = False, default: Any = None) -> Path:
    """Atomically write ``obj`` as indented JSON with a final newline (``default``: as in ``json.dumps``)."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=default) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` ``state`` to ``path``, then its SHA-256 beside it (``checksum_path``).

    The checksum is taken from the bytes on disk after the rename, so it vouches for what a later
    load will read; a crash between the two leaves a checkpoint without one, which readers accept
    when it loads.
    """
    atomic_write(path, lambda f: torch.save(state, f))
    write_checksum(path)
    return Path(path)


def write_checksum(path: str | os.PathLike) -> Path:
    """Atomically write ``<path>.sha256`` (``sha256sum`` format) for the file at ``path``."""
    path = Path(path)
    line = f"{sha256_of(path)}  {path.name}\n".encode()
    return atomic_write(checksum_path(path), lambda f: f.write(line))


def checksum_problem(path: str | os.PathLike) -> Optional[str]:
    """Why ``path`` does not match the checksum saved with it; None when it matches or none was saved."""
    return check_checksum(path)[0]


def check_checksum(path: str | os.PathLike) -> tuple[Optional[str], Optional[str]]:
    """(:func:`checksum_problem`, the SHA-256 it verified): the digest is returned so that a caller that
    also records it (a protocol card) does not hash a multi-GB file twice; None where none was saved."""
    path = Path(path)
    sidecar = checksum_path(path)
    try:
        recorded = sidecar.read_text(encoding="utf-8").split()[0].lower()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, IndexError) as e:
        return f"its checksum file {sidecar.name} is unreadable ({e.__class__.__name__})", None
    try:
        actual = sha256_of(path)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})", None
    if actual != recorded:
        return (
            f"its SHA-256 {actual[:12]}… differs from {recorded[:12]}… recorded in {sidecar.name} when it was "
            "saved: the file was damaged after the save"
        ), None
    return None, actual


def verify_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` if its bytes match the checksum saved with it (or none was saved); else a one-line ``UserError``."""
    path = Path(path)
    problem = checksum_problem(path)
    if problem is not None:
        raise UserError(f"checkpoint {path} is damaged: {problem}; pass an intact checkpoint or --resume auto")
    return path


def newest_intact_checkpoint(directory: str | os.PathLike) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """The newest checkpoint in ``directory`` that is intact, and the newer ones skipped with why.

    Intact: its bytes match its saved checksum; a checkpoint without one (written before checksums
    existed, or killed between the two writes) must load instead. Returns (None, skipped) when no
    checkpoint is intact, (None, []) when there is none.
    """
    skipped: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(directory)):
        problem = checksum_problem(path)
        if problem is None and not checksum_path(path).exists():
            try:
                load_checkpoint(path)
            except UserError as e:
                problem = f"it has no checksum and does not load ({e})"
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a bad file raises a one-line ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass an existing .pt file or --resume auto")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, code-executing pickle, ...
        why = why_unreadable(path, "a checkpoint", e, TORCH_KINDS)
        raise UserError(f"cannot load checkpoint {path}: {why}; use another checkpoint") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a checkpoint dict; pass a training checkpoint")
    return state


def step_of(path: str | os.PathLike) -> Optional[int]:
    """The step encoded in a checkpoint's name, or None when it is not a checkpoint name."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``directory`` sorted by step (temp files are never listed)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(step_of(p), p) for p in d.iterdir() if p.is_file() and step_of(p) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Optional[Path]:
    """The checkpoint with the highest step in ``directory`` (None when there is none)."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(directory: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (with their EMA exports and both checksums); 0 keeps all."""
    if keep_last <= 0:
        return []
    removed = []
    for p in list_checkpoints(directory)[:-keep_last]:
        for q in (p, checksum_path(p), ema_export_path(p), checksum_path(ema_export_path(p))):
            try:
                q.unlink()
                removed.append(q)
            except FileNotFoundError:
                pass
    return removed


def remove_stray_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files a killed writer left behind (``.<name>.*.tmp``); call before writing again."""
    d = Path(directory)
    if not d.is_dir():
        return []
    stray = [p for p in d.iterdir() if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")]
    for p in stray:
        p.unlink(missing_ok=True)
    return stray


def export_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: Optional[dict[str, Any]] = None
) -> Path:
    """Atomically write ``tensors`` as safetensors; ``metadata`` values are stored as JSON strings."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    blob = save(flat, metadata=meta)
    return atomic_write(path, lambda f: f.write(blob))
