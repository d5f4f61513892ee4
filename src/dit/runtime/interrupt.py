"""Ctrl-C for loops of long steps: the signal only sets a flag, and the loop stops at its next check.

Why: Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread happens
to be, and when that is a finalizer (an object's ``__del__``, a weakref callback, a generator being
closed: numpy, PIL, zipfile and tqdm all run some while a shard is written) the exception is printed
as "Exception ignored in …" and lost. `dit sample` then went on writing shards for minutes (1 run in
32 under load). A handler that raises nothing cannot be lost; :meth:`StopRequest.check` raises
``KeyboardInterrupt`` from the loop itself, between two batches, so a stop is honoured within one
batch. A second Ctrl-C raises at once, for a step that never ends.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional


class StopRequest:
    """Within ``with StopRequest() as stop:``, SIGINT sets ``stop.received``; ``stop.check()`` acts on it."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "StopRequest":
        # only the main thread may install handlers; a SIGINT ignored by the parent (a `cmd &` of a
        # non-interactive shell) stays ignored, as Python itself leaves it
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGINT)
            if current is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # the second Ctrl-C: now
        self.received = signal.Signals(signum).name

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` here when a stop was asked for since the ``with`` began."""
        if self.received is not None:
            raise KeyboardInterrupt
