"""What the `dit serve` tests share: a pipeline that can be held mid-run, and a real server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn


class GatedPipe:
    """Wraps a pipeline; each draw (``generate``) blocks in the progress callback of step ``hold_at`` until
    ``gate`` opens.

    ``reached`` is set when a call is inside that callback (a job is running); ``steps_run`` counts
    the sampler steps the wrapped pipeline really took (to see that a cancelled job stopped).
    """

    def __init__(self, pipe, hold_at: int = 0):
        self.pipe, self.hold_at = pipe, hold_at
        self.gate, self.reached = threading.Event(), threading.Event()
        self.steps_run = 0

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def generate(self, request, callback=None):
        def held(i, n, latent):
            self.steps_run += 1
            if i >= self.hold_at:
                self.reached.set()
                assert self.gate.wait(60), "the test never opened the gate"
            if callback is not None:
                callback(i, n, latent)

        return self.pipe.generate(request, held)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
