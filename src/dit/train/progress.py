"""What training reports: the progress bar, loss means over a logging window, skipped images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from dit.data.image_folder import read_bad_image_log
from dit.runtime.distributed import DistInfo, all_reduce_mean
from dit.runtime.logging import RunLogger
from dit.runtime.progress import progress


def progress_bar(total: Optional[int], initial: int, enabled: bool) -> Any:
    """The ``train`` progress (rank 0 only): a bar on a terminal, a log line every so often elsewhere."""
    return progress(total=total, initial=initial, enabled=enabled, desc="train", unit="step")


class LossWindow:
    """Loss terms summed on the device over the steps since the last log line (no host sync until then)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.steps = 0
        self.good = 0
        self.started = time.monotonic()

    def add(self, losses: dict[str, torch.Tensor], finite: bool) -> None:
        """Count one step; only finite steps add to the means."""
        self.steps += 1
        if finite:
            self.good += 1
            for k, v in losses.items():
                self.sums[k] = self.sums.get(k, 0) + v

    def metrics(self, info: DistInfo, device: torch.device) -> dict[str, float]:
        """Mean of each term over the window's finite steps and all ranks, and ``steps_per_sec``."""
        seconds = time.monotonic() - self.started
        good = max(1, self.good)
        keys = sorted(self.sums)
        values: list[float] = []
        if keys:
            packed = torch.stack([torch.as_tensor(self.sums[k], device=device, dtype=torch.float32) for k in keys])
            values = (all_reduce_mean(packed, info) / good).tolist()  # host sync only here, at logging
        metrics = dict(zip(keys, values))
        metrics["steps_per_sec"] = self.steps / max(seconds, 1e-9)
        return metrics


class BadImageReport:
    """Logs images skipped as unreadable since the last report (all processes append to one file)."""

    def __init__(self, log_file: Path, logger: RunLogger):
        self.log_file, self.logger = log_file, logger
        self.reported = 0

    def __call__(self, found_here: dict[str, str]) -> None:
        bad = dict(found_here)
        if self.log_file.exists():
            bad.update(read_bad_image_log(self.log_file))
        if len(bad) > self.reported:
            names = sorted(bad)[:5]
            self.logger.info(
                f"skipped {len(bad)} unreadable image(s) so far (all listed in {self.log_file.name}): "
                + "; ".join(f"{n} ({bad[n]})" for n in names)
                + (" ..." if len(bad) > 5 else "")
            )
            self.reported = len(bad)
