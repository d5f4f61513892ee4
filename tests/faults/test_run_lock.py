"""The run folder: bad --results-dir paths are one line, and one process at a time may use a folder.

The lock tests use real processes: a child that holds the lock (``RunLock`` or a whole
``dit train`` paused inside a checkpoint write), and this process or a second ``dit train``
that must be turned away — then SIGKILL of the holder, after which the folder is taken over.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dit.errors import UserError
from dit.runtime.checkpoint import PAUSE_ENV
from dit.runtime.run_lock import LOCK_NAME, RunLock

from .helpers import assert_refused, run_cli, train_args

pytestmark = pytest.mark.faults


# ---------------------------------------------------------------------------------------------
# --results-dir paths that cannot be a run folder
# ---------------------------------------------------------------------------------------------


def test_results_dir_that_is_a_file_is_one_line(capsys, data, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("a file, not a folder")
    line = assert_refused(capsys, train_args(data, target, "--max-steps", "1"), tmp_path, "is a file, not a folder")
    assert str(target) in line
    assert target.read_text() == "a file, not a folder"


def test_results_dir_below_a_file_is_one_line(capsys, data, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    line = assert_refused(
        capsys, train_args(data, blocker / "sub" / "run", "--max-steps", "1"), tmp_path, f"{blocker} is a file"
    )
    assert "cannot be made" in line


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS], ids=["permission", "read-only-fs"])
def test_results_dir_that_cannot_be_made_is_one_line(capsys, monkeypatch, data, tmp_path, err):
    """mkdir fails as under a folder without write permission or on a read-only mount (the tests
    run as root, whom chmod does not stop, so the failure is injected at mkdir)."""
    target = tmp_path / "ro" / "run"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(err, os.strerror(err), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert_refused(
        capsys,
        train_args(data, target, "--max-steps", "1"),
        tmp_path,
        os.strerror(err),
        "pick a folder you can write to",
    )
    assert not target.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_results_dir_in_an_unwritable_folder_is_one_line(capsys, data, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    try:
        assert_refused(capsys, train_args(data, parent / "run", "--max-steps", "1"), tmp_path, "Permission denied")
    finally:
        parent.chmod(0o700)


def test_a_refused_run_leaves_no_folder_behind(capsys, tmp_path):
    """The folder is made (and locked) before the data is read; a run refused for its data removes it again."""
    run = tmp_path / "new" / "run"
    assert_refused(capsys, train_args(tmp_path / "no-data", run, "--max-steps", "1"), tmp_path, "does not exist")
    assert not run.exists()


# ---------------------------------------------------------------------------------------------
# The lock, between real processes
# ---------------------------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import json, os, sys, time
    from dit.runtime.run_lock import RunLock
    lock = RunLock.acquire(sys.argv[1])
    if len(sys.argv) > 2:  # pretend the record names a process that has gone (another pid namespace)
        os.ftruncate(lock._fd, 0)
        fake = {"host": sys.argv[2], "pid": int(sys.argv[3]), "started": 0}
        os.pwrite(lock._fd, (json.dumps(fake) + "\\n").encode(), 0)
    print("locked", flush=True)
    time.sleep(120)
""")


def _holder(folder: Path, *fake_owner: str) -> subprocess.Popen:
    argv = [sys.executable, "-c", _HOLDER, str(folder), *fake_owner]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_process_is_turned_away_then_takes_over_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        owner = json.loads((run / LOCK_NAME).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        with pytest.raises(UserError) as e:
            RunLock.acquire(run)
        msg = str(e.value)
        assert "in use by another run" in msg and f"pid {holder.pid}" in msg and "choose another --results-dir" in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing: its record stays, but the kernel lock went with it
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid
    lock = RunLock.acquire(run)
    try:
        assert lock.stale_owner["pid"] == holder.pid
        assert f"pid {holder.pid}" in lock.describe_stale()
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not (run / LOCK_NAME).exists()  # a clean release deletes the file
    RunLock.acquire(run).release()  # and the folder can be locked again


def test_held_lock_of_a_pid_that_is_gone_says_what_to_do(tmp_path):
    """The kernel lock is held but the recorded pid does not run on this host (another pid namespace)."""
    run = tmp_path / "run"
    gone = _dead_pid()
    holder = _holder(run, socket.gethostname(), str(gone))
    try:
        with pytest.raises(UserError) as e:
            RunLock.acquire(run)
        msg = str(e.value)
        assert f"pid {gone}" in msg and "no longer runs here" in msg and "fuser -v" in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_second_dit_train_on_a_busy_folder_stops_at_once(data, tmp_path):
    """Two real ``dit train`` processes: the first is held inside its first checkpoint write, the
    second (``--resume auto``, as a re-submitted job would) stops with one line and changes nothing;
    after SIGKILL of the first, a third takes over the stale lock, says so, and finishes."""
    run = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "dit.cli.main",
        *train_args(data, run, "--max-steps", "4", "--ckpt-every", "2", "--resume", "auto"),
    ]
    first = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, PAUSE_ENV: "0000002.pt"}
    )
    try:
        for line in first.stderr:
            if "paused before renaming" in line:
                break
        else:
            pytest.fail(f"the first run exited ({first.wait()}) before its checkpoint write")
        log_before = (run / "log.txt").read_bytes()
        second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert lines[-1].startswith("error:") and f"pid {first.pid}" in lines[-1] and "in use" in lines[-1], lines
        assert (run / "log.txt").read_bytes() == log_before  # the second run wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert f"took over the lock of a run that ended without releasing it (pid {first.pid}" in third.stderr
    assert (run / "checkpoints" / "0000004.pt").exists() and not (run / LOCK_NAME).exists()


def test_results_dir_is_checked_before_any_run(capsys, data, tmp_path):
    """A folder locked by another process is refused through the CLI with exit 2 and one line."""
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        code, _, err = run_cli(capsys, train_args(data, run, "--max-steps", "1"))
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
        assert f"pid {holder.pid}" in errors[0]
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_torchrun_ranks_share_the_lock_and_stop_together_on_a_busy_folder(data, tmp_path):
    """2 gloo ranks: on a folder another process holds, both ranks stop at once with the same line
    (rank 1 learns it from rank 0, it does not wait in a collective); on a free folder the two
    ranks run together under rank 0's one lock (a per-rank lock would turn rank 1 away)."""
    from tests.helpers.torchrun import run_torchrun

    run = tmp_path / "run"
    holder = _holder(run)
    try:
        proc = run_torchrun(train_args(data, run, "--max-steps", "1"), timeout=240, check=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # both ranks share the stderr pipe: a line may land behind the other rank's output
    errors = ["error:" + line.split("error:", 1)[1] for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]
    assert errors[0] == errors[1] and f"pid {holder.pid}" in errors[0] and "in use" in errors[0], errors
    proc = run_torchrun(train_args(data, run, "--max-steps", "1", "--resume", "auto"), timeout=240)
    assert proc.stderr.count("took over the lock") == 1  # the killed holder's record, reported by rank 0
    assert (run / "checkpoints" / "0000001.pt").exists() and not (run / LOCK_NAME).exists()
