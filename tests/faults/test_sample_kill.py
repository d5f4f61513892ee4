"""SIGKILL of a real ``dit sample`` writing a multi-shard ``.npz``, at random moments, then the same
command again (and again): the final file is byte-identical to an uninterrupted run's.

The moments are drawn from a seed: after a random number of shards is on disk, a random part of
one shard's time later (mid-sampling, mid-write, or during the merge), or during start-up.
Shard-level resume itself (deleted and torn shards, other settings) is tested in
tests/integration/test_sample_cli.py."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dit.cli.main import main

from tests.helpers.sample import sample_argv, trained_run

pytestmark = pytest.mark.faults

NUM_SAMPLES, BATCH = 16, 2  # 8 shards
ARGS = ["--num-samples", str(NUM_SAMPLES), "--batch-size", str(BATCH), "--num-sampling-steps", "25", "--seed", "3"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A tiny trained checkpoint and the uninterrupted run's file."""
    root = tmp_path_factory.mktemp("samplekill")
    ckpt = trained_run(root)
    out = root / "straight.npz"
    assert main(sample_argv(ckpt, out, *ARGS)) == 0
    return ckpt, out


def _shards(out: Path) -> int:
    folder = out.with_name(out.name + ".shards")
    return len(list(folder.glob("*-*.npz"))) if folder.is_dir() else 0


def _finished(out: Path) -> bool:
    return out.is_file() and not out.with_name(out.name + ".shards").exists()


def _launch(ckpt: Path, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "dit.cli.main", *sample_argv(ckpt, out, *ARGS)]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


def _kill_at_a_random_moment(proc: subprocess.Popen, out: Path, rnd: random.Random) -> str:
    """SIGKILL once ``rnd`` says so; returns where (for the failure message)."""
    have = _shards(out)
    target = rnd.randint(have - 1, NUM_SAMPLES // BATCH - 1)  # have-1: kill during start-up
    if target < have:
        time.sleep(rnd.uniform(0.0, 3.0))
        where = "start-up"
    else:
        while _shards(out) < target and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rnd.uniform(0.0, 0.2))  # part of a shard's time: sampling, writing or merging
        where = f"after shard {target}"
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return where


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_moments_then_rerun_gives_the_same_bytes(straight, tmp_path, seed):
    ckpt, reference = straight
    out = tmp_path / "killed.npz"
    rnd = random.Random(seed)
    moments = []
    for _ in range(2):  # two kills, then a run to the end
        proc = _launch(ckpt, out)
        moments.append(_kill_at_a_random_moment(proc, out, rnd))
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read()
        if _finished(out):  # it ended (or was killed on its way out) with the output written and its shards gone
            break
    finished = _finished(out)
    proc = _launch(ckpt, out)
    _, err = proc.communicate(timeout=300)
    if finished:  # a finished output is never replaced without --overwrite: the rerun says so, leaves it as it was
        assert proc.returncode == 2 and "already exists" in err and "--overwrite" in err, err
    else:  # killed before the end: the rerun resumes from the shards
        assert proc.returncode == 0, err
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(reference.read_bytes()).hexdigest(), f"killed at {moments}"
    assert not out.with_name(out.name + ".shards").exists()  # merged and cleaned up
