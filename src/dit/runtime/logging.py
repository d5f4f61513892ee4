"""Run logging on rank 0: console lines, a text log, a CSV of metrics and (when asked) TensorBoard events.

Knows nothing about DiT. Other ranks get a logger whose methods do nothing, so callers never
branch on the rank. Files live in the run folder: ``log.txt``, ``metrics.csv``, ``tb/``.
TensorBoard is an optional extra (``pip install "dit[tensorboard]"``): without it training logs
the CSV, and asking for it gives one :class:`UserError` line saying what to install.
"""

from __future__ import annotations

import contextlib
import csv
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, TextIO

from dit.errors import UserError


@contextlib.contextmanager
def _writing(path: Path):
    """A full disk or an unwritable folder while logging is the user's to fix: one line, not a traceback."""
    try:
        yield
    except OSError as e:
        raise UserError(
            f"cannot write {path}: {e.strerror or e}; free space or fix permissions (checkpoints already "
            f"written are kept)"
        ) from e


class _RecordWriterGuard:
    """Stands in for TensorBoard's record writer inside its writer thread and keeps the first OSError.

    TensorBoard writes events from a background thread; a full disk there ends that thread with a
    traceback printed by the thread machinery, and the next ``add_scalar`` re-raises the bare
    ``OSError``. With this guard the thread never fails: the error waits in :attr:`error`, and
    :meth:`RunLogger.log_metrics` raises it as the same one-line ``UserError`` as a failed CSV write.
    """

    def __init__(self, inner):
        self._inner = inner
        self.error: Optional[OSError] = None

    def _call(self, name: str, *args) -> None:
        if self.error is not None:
            return  # the disk is full: drop further events instead of failing again
        try:
            getattr(self._inner, name)(*args)
        except OSError as e:
            self.error = e

    def write(self, data: bytes) -> None:
        self._call("write", data)

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        try:
            self._inner.close()
        except OSError as e:
            self.error = self.error or e


def _guard_tensorboard(writer) -> Optional[_RecordWriterGuard]:
    """Put a :class:`_RecordWriterGuard` between ``SummaryWriter``'s writer thread and its file.

    Reaches into tensorboard's ``EventFileWriter`` (``_async_writer._writer`` and the thread's
    ``_record_writer``, both the same object); returns None when a tensorboard version lays them out
    otherwise, in which case an error still arrives on the next write, as a bare ``OSError`` that
    ``_writing`` turns into the one line.
    """
    try:
        async_writer = writer._get_file_writer().event_writer._async_writer
        thread = async_writer._worker
        if thread._record_writer is not async_writer._writer:
            return None
    except AttributeError:
        return None
    guard = _RecordWriterGuard(async_writer._writer)
    async_writer._writer = thread._record_writer = guard
    return guard


def tensorboard_writer(log_dir: str | Path, **kwargs: Any):
    """A ``torch.utils.tensorboard.SummaryWriter``; UserError naming the extra when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            'TensorBoard logging needs the tensorboard package: pip install "dit[tensorboard]" '
            "(or drop --tensorboard: metrics.csv has the same numbers)"
        ) from None
    return SummaryWriter(log_dir=str(log_dir), **kwargs)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class RunLogger:
    """Writes messages and metric rows; a no-op unless ``enabled`` (rank 0)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False, console: bool = True):
        self.enabled = enabled
        self.console = console
        self.run_dir = Path(run_dir)
        self._csv_file: Optional[TextIO] = None
        self._csv: Optional[csv.DictWriter] = None
        self._tb = None
        self._tb_guard: Optional[_RecordWriterGuard] = None
        if not enabled:
            return
        with _writing(self.run_dir / "log.txt"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._text = open(self.run_dir / "log.txt", "a", encoding="utf-8")
        if tensorboard:
            with _writing(self.run_dir / "tb"):
                self._tb = tensorboard_writer(self.run_dir / "tb")
            self._tb_guard = _guard_tensorboard(self._tb)

    def info(self, message: str) -> None:
        """A timestamped line on the console (stderr, so it does not break the progress bar) and in log.txt."""
        if not self.enabled:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        if self.console:
            print(line, file=sys.stderr, flush=True)
        with _writing(self.run_dir / "log.txt"):
            self._text.write(line + "\n")
            self._text.flush()

    def _open_csv(self, keys: list[str]) -> tuple[TextIO, csv.DictWriter]:
        """metrics.csv opened for appending, with its header written when the file is new."""
        path = self.run_dir / "metrics.csv"
        fieldnames = keys
        if path.exists() and path.stat().st_size > 0:  # resumed run: keep the existing columns
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            if header:
                fieldnames = header
        file = open(path, "a", newline="", encoding="utf-8")
        writer = csv.DictWriter(file, fieldnames=fieldnames, extrasaction="ignore")
        if file.tell() == 0:
            writer.writeheader()
        return file, writer

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One row in metrics.csv, one scalar per key in TensorBoard and a console/log line."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with _writing(self.run_dir / "metrics.csv"):
            if self._csv is None or self._csv_file is None:
                self._csv_file, self._csv = self._open_csv(list(row))
            self._csv.writerow(row)
            self._csv_file.flush()
        if self._tb is not None:
            with _writing(self.run_dir / "tb"):
                for k, v in metrics.items():
                    self._tb.add_scalar(f"train/{k}", float(v), int(step))
                self._tb.flush()  # waits for the writer thread: its error (if any) is in the guard now
                self._raise_tensorboard_error()
        self.info(f"step {int(step):07d} " + " ".join(f"{k}={_fmt(float(v))}" for k, v in metrics.items()))

    def _raise_tensorboard_error(self) -> None:
        if self._tb_guard is not None and self._tb_guard.error is not None:
            raise self._tb_guard.error  # inside _writing: one line

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._csv_file is not None:
            self._csv_file.close()
        self._text.close()
        if self._tb is not None:
            with _writing(self.run_dir / "tb"):
                self._tb.close()
                self._raise_tensorboard_error()
