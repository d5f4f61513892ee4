"""One policy for every file or folder a command writes where the user said: never replace one unasked.

Why: `dit sample --out samples.npz` run twice silently replaced hours of 50K-sample work. Every
command that writes a user-named output (sample, make-reference, convert, convert-inception,
eval --out) checks it with :func:`refuse_existing` before any work: an existing output stops the
command with one line naming ``--overwrite`` and what would be lost, and the old output stays
byte-identical. With ``--overwrite`` the new output is written beside the old one and renamed over
it (files: :func:`dit.runtime.checkpoint.atomic_write`; folders: :func:`replace_folder`), so the
path never holds a half-written output. An empty folder holds nothing to lose and is used as it is.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Optional

from dit.errors import UserError

_COUNT_LIMIT = 100_000  # files counted in a folder before "at least" (a folder of ImageNet is millions)


def _size(n: int) -> str:
    """``n`` bytes as people read it: 13 bytes, 1.2 KB, 3.4 MB, 5.6 GB."""
    if n < 1024:
        return f"{n:,} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def describe_existing(path: str | os.PathLike) -> Optional[str]:
    """What is at ``path`` that writing there would lose ("1.2 MB, written 2026-12-07 01:02"), or None."""
    p = Path(path)
    if p.is_dir():
        count = 0
        for _root, _dirs, files in os.walk(p):
            count += len(files)
            if count >= _COUNT_LIMIT:
                return f"a folder of at least {count:,} files"
        return f"a folder of {count:,} file{'s' if count != 1 else ''}" if count else None
    try:
        st = p.stat()
    except OSError:
        return None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    return f"{_size(st.st_size)}, written {when}"


def refuse_existing(path: str | os.PathLike, overwrite: bool, name: str = "") -> None:
    """A one-line ``UserError`` when ``path`` holds something and ``overwrite`` is off.

    ``name``: how the command calls the output (``--out``, ``OUT.npz``), put before the path.
    """
    if overwrite:
        return
    what = describe_existing(path)
    if what is None:
        return
    label = f"{name} {path}" if name else str(path)
    raise UserError(
        f"{label} already exists ({what}); pass --overwrite to replace it (what it holds now is lost) "
        "or choose another path"
    )


def replace_folder(new: Path, folder: Path) -> Path:
    """Put the finished folder ``new`` at ``folder``, moving an existing one out first and deleting it after.

    ``folder`` is at every moment absent, the old folder whole, or the new one whole: never a mix.
    """
    if folder.exists():
        old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}.tmp")
        os.replace(folder, old)
        try:
            os.replace(new, folder)
        except BaseException:
            os.replace(old, folder)  # put the old one back: a failed overwrite loses nothing
            raise
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)  # a file where the folder goes
    else:
        os.replace(new, folder)
    return folder
