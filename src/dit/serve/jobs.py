"""One generation at a time per device, the others in a bounded queue, each cancellable.

A :class:`JobQueue` owns one worker thread (one device) that runs jobs in arrival order. At most
``max_waiting`` jobs wait behind the running one; :meth:`JobQueue.submit` beyond that raises
:class:`Busy` (the server answers HTTP 429). A job is cancelled by :meth:`JobQueue.cancel` (the
cancel endpoint, or the last page watching it going away): a waiting job is dropped, a running
one stops at its next sampler step because its progress callback raises :class:`Cancelled`.
Finished jobs keep their results (PNG bytes, the protocol card) until ``keep_finished`` newer ones
have finished. Knows nothing of HTTP; the work itself is the ``run`` function given.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from dit.errors import UserError, one_line

log = logging.getLogger("dit.serve")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class Busy(Exception):
    """The queue is full: try again later."""


class Cancelled(Exception):
    """Raised inside a running job's progress callback to stop its sampler."""


@dataclass
class Job:
    """A request's life: waiting → running (step k of n) → done | failed | cancelled."""

    request: Any
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: str = QUEUED
    step: int = 0
    num_steps: int = 0
    error: Optional[str] = None
    result: Any = None
    preview: Optional[bytes] = None  # a PNG of the images as they form (set by the work)
    created: float = field(default_factory=time.time)
    finished_at: Optional[float] = None
    version: int = 0  # bumped on every change; watchers send an update when it moves
    watchers: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def progress(self, step: int, num_steps: int) -> None:
        """Called by the work after each sampler step; raises :class:`Cancelled` once cancel was asked."""
        self.step, self.num_steps = step, num_steps
        self.version += 1
        if self.cancel_requested.is_set():
            raise Cancelled()


class JobQueue:
    """A worker thread that runs ``run(job) -> result`` for one job at a time, in arrival order."""

    def __init__(self, run: Callable[[Job], Any], max_waiting: int = 4, keep_finished: int = 32):
        if max_waiting < 0:
            raise UserError(f"the queue length must be >= 0, got {max_waiting}")
        self._run, self.max_waiting, self.keep_finished = run, max_waiting, keep_finished
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._running: Optional[Job] = None
        self._closed = False
        self._counter = itertools.count()
        self._thread = threading.Thread(target=self._work, name="dit-serve-worker", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- the HTTP side
    def submit(self, request: Any) -> Job:
        """Queue a job for ``request``; :class:`Busy` when ``max_waiting`` jobs already wait."""
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            if len(self._waiting) + (self._running is not None) > self.max_waiting:
                raise Busy(f"{len(self._waiting)} requests are already waiting (the limit)")
            job = Job(request)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._cond.notify_all()
            return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """Jobs ahead of ``job`` (the running one included); 0 once it runs."""
        with self._cond:
            if job.status != QUEUED:
                return 0
            ahead = next((k for k, j in enumerate(self._waiting) if j is job), 0)
            return ahead + (self._running is not None)

    def cancel(self, job_id: str, reason: str = "cancelled") -> Optional[Job]:
        """Stop a job: drop it if waiting, make its next step raise if running. None if unknown."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return job
            job.cancel_requested.set()
            if job.status == QUEUED:
                self._waiting.remove(job)
                self._finish(job, CANCELLED, reason)
            else:
                job.error = reason
            return job

    def watch(self, job: Job, delta: int) -> int:
        """Count a page that streams this job's progress (+1) or stopped doing so (-1)."""
        with self._cond:
            job.watchers += delta
            return job.watchers

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "waiting": len(self._waiting),
                "running": int(self._running is not None),
                "max_waiting": self.max_waiting,
            }

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the worker."""
        with self._cond:
            self._closed = True
            for job in list(self._waiting):
                job.cancel_requested.set()
                self._finish(job, CANCELLED, "the server is shutting down")
            self._waiting.clear()
            if self._running is not None:
                self._running.cancel_requested.set()
            self._cond.notify_all()
        self._thread.join(timeout)

    # ----------------------------------------------------------------- the worker
    def _finish(self, job: Job, status: str, error: Optional[str] = None) -> None:
        """Mark ``job`` finished (lock held) and forget the oldest finished jobs beyond the limit."""
        job.status, job.finished_at = status, time.time()
        if error is not None:
            job.error = error
        job.version += 1
        self._finished.append(job.id)
        while len(self._finished) > self.keep_finished:
            self._jobs.pop(self._finished.popleft(), None)
        self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.status, self._running = RUNNING, job
                job.version += 1
            status, error, result = DONE, None, None
            try:
                result = self._run(job)
            except Cancelled:
                status, error = CANCELLED, job.error or "cancelled"
            except UserError as e:
                status, error = FAILED, one_line(e)
            except Exception as e:  # a bug or a device error: logged with its traceback, answered in one line
                log.exception("job %s failed", job.id)
                status, error = FAILED, f"internal error ({type(e).__name__}); the server log has the details"
            with self._cond:
                job.result = result
                self._running = None
                if status == DONE and job.cancel_requested.is_set():
                    status, error = CANCELLED, job.error or "cancelled"
                self._finish(job, status, error)
