"""Shared set-up of the fault tests: run the CLI in-process, watch a folder for changes, build
small inputs (image folders of every kind, a trained tiny run, a malicious pickle)."""

from __future__ import annotations

import hashlib
import logging
import pickle
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from dit.cli.main import main

from tests.helpers.train import make_image_folder, train_args  # noqa: F401  (re-exported)


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _library_logs_follow_stderr() -> None:
    """diffusers makes its log handler once, bound to the sys.stderr of that moment; in a test that is
    a capture stream closed afterwards, and later warnings print '--- Logging error ---' tracebacks.
    Outside pytest (the real CLI) sys.stderr never changes, so this only concerns tests."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.get_logger("diffusers")  # creates the library handler now
    for handler in logging.getLogger("diffusers").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(_CurrentStderr())


_library_logs_follow_stderr()


def tree_digest(root: Path) -> dict[str, str]:
    """relative path → sha256 of every file under ``root`` (what a refused command must not touch)."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_cli(capsys, argv: Iterable[str]) -> tuple[int, str, str]:
    """``dit <argv>`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop earlier output
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2)
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(capsys, argv, watch: Path, *words: str) -> str:
    """``dit argv`` exits 2 with one ``error:`` line holding ``words``; files under ``watch`` unchanged.

    Returns the error line. Log lines a command printed before it found the problem are allowed;
    a traceback is not.
    """
    before = tree_digest(watch)
    code, out, err = run_cli(capsys, argv)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, (code, err)
    line = errors[0]
    assert err.rstrip("\n").endswith(line), f"the error is not the last thing printed:\n{err}"
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    after = tree_digest(watch)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"a refused command changed {changed}"
    return line


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


class Boom:
    """Unpickling this calls ``open(marker, "w")``: the marker file is proof a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(path: Path, marker: Path, fmt: str = "torch") -> Path:
    """A file that runs ``touch marker`` when unpickled with full pickle.

    ``fmt``: ``"torch"`` (torch.save zip of a dict holding the object next to real tensors, like
    a doctored checkpoint) or ``"raw"`` (a plain pickle stream, the legacy .pt format).
    """
    import torch

    payload = {"model": {"w": torch.zeros(2)}, "ema": {"w": torch.zeros(2)}, "evil": Boom(marker)}
    if fmt == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    return path
