"""When training stops: budgets (steps, epochs, minutes) and SIGINT/SIGTERM, agreed on by every rank."""

from __future__ import annotations

import signal
import time
from typing import Any, Optional

from dit.config import TrainConfig
from dit.runtime.distributed import DistInfo, all_reduce_max


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a write in progress completes)."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave handlers alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stop_reason(
    cfg: TrainConfig, step: int, epoch: int, signals: StopSignals, started: float, info: DistInfo
) -> Optional[str]:
    """Why to stop now (``None``: go on). A collective: one rank's signal or clock stops everyone."""
    reason = None
    if cfg.max_steps is not None and step >= cfg.max_steps:
        reason = "max-steps"
    elif cfg.epochs is not None and epoch >= cfg.epochs:
        reason = "epochs"
    elif signals.received:
        reason = signals.received
    elif cfg.max_minutes is not None and time.monotonic() - started >= cfg.max_minutes * 60:
        reason = "max-minutes"
    code = {None: 0, "max-steps": 1, "epochs": 1}.get(reason, 2)
    agreed = all_reduce_max(code, info)
    if agreed and reason is None:
        reason = "stopped by another rank"
    return reason
