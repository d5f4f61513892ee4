"""SIGKILL of a real training process at moments chosen so they are hit every time: inside a
checkpoint write (temp file complete, rename not done, held open by the PAUSE_ENV hook of
dit.runtime.checkpoint), right after a logged step, and during start-up. The newest complete
checkpoint always loads, and ``--resume auto`` ends on exactly the weights of an uninterrupted run.

Kills at random moments (probabilistic, every step checkpointed), SIGINT/SIGTERM and non-finite
losses are covered by tests/integration/test_train_faults.py."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dit.cli.main import main
from dit.runtime.checkpoint import PAUSE_ENV, latest_checkpoint, list_checkpoints, load_checkpoint

from tests.helpers.train import assert_states_close, final_state
from .helpers import make_image_folder, train_args

pytestmark = pytest.mark.faults

STEPS = 12
COMMON = [
    "--max-steps",
    str(STEPS),
    "--ckpt-every",
    "2",
    "--log-every",
    "1",
    "--keep-last",
    "3",
    "--ema-warmup",
    "--ema-decay",
    "0.9",
]


class Trainer:
    """``dit train ... --resume auto`` as a child process whose stderr lines we can wait for."""

    def __init__(self, data: Path, run: Path, env: dict | None = None):
        argv = [sys.executable, "-m", "dit.cli.main", *train_args(data, run, *COMMON, "--resume", "auto")]
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})}
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 180.0) -> str:
        end = time.monotonic() + timeout
        with self._new:
            while True:
                hit = next((line for line in self.lines if text in line), None)
                if hit is not None:
                    return hit
                assert self.proc.poll() is None, (
                    f"exited ({self.proc.returncode}) before {text!r}:\n{''.join(self.lines)}"
                )
                assert time.monotonic() < end, f"no {text!r} within {timeout}s:\n{''.join(self.lines)}"
                self._new.wait(0.5)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL


def _assert_newest_is_complete(run: Path) -> int:
    """The newest checkpoint (if any) loads and names its own step; returns that step (0 if none)."""
    newest = latest_checkpoint(run / "checkpoints")
    if newest is None:
        return 0
    state = load_checkpoint(newest)
    assert newest.name == f"{state['step']:07d}.pt"
    return state["step"]


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_auto_equals_an_uninterrupted_run(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)  # 12 images, batch 4: epochs of 3 steps
    straight = tmp_path / "straight"
    assert main(train_args(data, straight, *COMMON)) == 0

    run = tmp_path / "killed"
    # 1. inside the write of checkpoint 4: its temp file is complete, the rename has not happened
    t = Trainer(data, run, env={PAUSE_ENV: "0000004.pt"})
    t.wait_for("paused before renaming")
    t.kill()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "0000004.pt" not in names and any(n.startswith(".0000004.pt.") and n.endswith(".tmp") for n in names), names
    assert _assert_newest_is_complete(run) == 2

    # 2. between checkpoints (after step 7 is logged; checkpoint 6 is the newest), then during start-up
    t = Trainer(data, run)
    t.wait_for("removed .0000004.pt.")  # the resumed run cleaned up the killed write's temp file
    t.wait_for(f"step {7:07d}")
    t.kill()
    assert _assert_newest_is_complete(run) == 6
    t = Trainer(data, run)
    time.sleep(random.Random(0).uniform(0.5, 2.0))  # imports / model set-up
    t.kill()
    assert _assert_newest_is_complete(run) == 6

    # 3. the last launch runs to the end
    t = Trainer(data, run)
    assert t.proc.wait(timeout=300) == 0, "".join(t.lines)
    a, b = final_state(straight), final_state(run)
    assert a["step"] == b["step"] == STEPS
    assert assert_states_close(a, b, atol=0.0) == 0.0  # bitwise: model, EMA and optimiser state
    assert not list((run / "checkpoints").glob("*.tmp"))  # the killed writer's temp file was cleaned up
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["0000008.pt", "0000010.pt", "0000012.pt"]
