"""Progress for long loops: a tqdm bar on a terminal, one plain log line every so often elsewhere.

Why: a bar redraws itself with a carriage return on every update. On a terminal that is one line;
in a file (``nohup``, a batch job's log, CI) every redraw stays, and a 30-minute training run left
~17,000 of them. Where the stream is not a terminal (and not a notebook, where tqdm draws a
widget), :func:`progress` writes ``desc: n/total unit (p%), rate, postfix`` once every
``$DIT_PROGRESS_SECONDS`` seconds (default 30) and once at the end.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

from dit.errors import UserError

SECONDS_ENV = "DIT_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def line_interval() -> float:
    """Seconds between two progress lines when not on a terminal (``$DIT_PROGRESS_SECONDS``)."""
    text = os.environ.get(SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise UserError(f"{SECONDS_ENV}={text[:20]!r} is not a number of seconds >= 0; set it like 30, or unset it")
    return value


def _on_terminal(stream: TextIO) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget that updates in place
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or unusual streams
        return False


class LineProgress:
    """The subset of tqdm's interface the loops use, reporting in whole lines."""

    def __init__(
        self,
        iterable: Optional[Iterable[Any]],
        total: Optional[int],
        initial: int,
        desc: str,
        unit: str,
        stream: TextIO,
        every: float,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.n, self.desc, self.unit = iterable, total, initial, desc, unit
        self.stream, self.every = stream, every
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.start_n = self.reported = initial

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress without an iterable is updated, not iterated"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every or self.reported == self.start_n:  # the first step, then every interval
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.n != self.reported:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.last, self.reported = now, self.n
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = now - self.start
        rate = f", {(self.n - self.start_n) / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        self.stream.write(f"{self.desc}: {done} {self.unit}{pct}{rate}{extra}\n")
        self.stream.flush()


def progress(
    iterable: Optional[Iterable[Any]] = None,
    *,
    desc: str,
    total: Optional[int] = None,
    initial: int = 0,
    unit: str = "it",
    enabled: bool = True,
    stream: Optional[TextIO] = None,
) -> Any:
    """A tqdm bar on a terminal, a :class:`LineProgress` elsewhere, a silent tqdm when not ``enabled``."""
    from tqdm.auto import tqdm

    out = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if _on_terminal(out):
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=out)
    return LineProgress(iterable, total, initial, desc, unit, out, line_interval())
