"""Run logging on rank 0: console lines, a text log, a CSV of metrics and TensorBoard events.

Knows nothing about DiT. Other ranks get a logger whose methods do nothing, so callers never
branch on the rank. Files live in the run folder: ``log.txt``, ``metrics.csv``, ``tb/``.
"""

from __future__ import annotations

import contextlib
import csv
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from dit.errors import UserError


@contextlib.contextmanager
def _writing(path: Path):
    """A full disk or an unwritable folder while logging is the user's to fix: one line, not a traceback."""
    try:
        yield
    except OSError as e:
        raise UserError(
            f"cannot write {path}: {e.strerror or e}; free space or fix permissions (checkpoints already written are kept)"
        ) from e


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class RunLogger:
    """Writes messages and metric rows; a no-op unless ``enabled`` (rank 0)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True, console: bool = True):
        self.enabled = enabled
        self.console = console
        self.run_dir = Path(run_dir)
        self._csv_file = None
        self._csv: Optional[csv.DictWriter] = None
        self._tb = None
        if not enabled:
            return
        with _writing(self.run_dir / "log.txt"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._text = open(self.run_dir / "log.txt", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

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

    def _open_csv(self, keys: list[str]) -> None:
        path = self.run_dir / "metrics.csv"
        fieldnames = keys
        if path.exists() and path.stat().st_size > 0:  # resumed run: keep the existing columns
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            if header:
                fieldnames = header
        self._csv_file = open(path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=fieldnames, extrasaction="ignore")
        if self._csv_file.tell() == 0:
            self._csv.writeheader()

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One row in metrics.csv, one scalar per key in TensorBoard and a console/log line."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with _writing(self.run_dir / "metrics.csv"):
            if self._csv is None:
                self._open_csv(list(row))
            self._csv.writerow(row)
            self._csv_file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"train/{k}", float(v), int(step))
            self._tb.flush()
        self.info(f"step {int(step):07d} " + " ".join(f"{k}={_fmt(float(v))}" for k, v in metrics.items()))

    def close(self) -> None:
        if not self.enabled:
            return
        if self._csv_file is not None:
            self._csv_file.close()
        if self._tb is not None:
            self._tb.close()
        self._text.close()
        self.enabled = False
