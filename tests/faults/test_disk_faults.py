"""A full disk or an unwritable folder while checkpointing: a one-line error, the previous
checkpoint intact, no temp file left, and the run resumes from it to the same weights."""

from __future__ import annotations

import errno
import os

import pytest
import torch

import dit.runtime.checkpoint as ck
from dit.runtime.checkpoint import latest_checkpoint, load_checkpoint

from tests.helpers.train import assert_states_close, final_state
from .helpers import run_cli, train_args

pytestmark = pytest.mark.faults

COMMON = ["--max-steps", "4", "--ckpt-every", "2", "--keep-last", "0"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 4-step run to compare against."""
    from dit.cli.main import main

    run = tmp_path_factory.mktemp("disk") / "straight"
    assert main(train_args(data, run, *COMMON)) == 0
    return final_state(run)


def _full_disk_at_replace(monkeypatch, name):
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)


def _full_disk_mid_write(monkeypatch, name):
    """torch.save of checkpoint ``name`` writes part of the file, then the disk is full."""
    real = torch.save
    step = int(name.split(".")[0])

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == step:
            f.write(b"PK\x03\x04 partial bytes")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(ck.torch, "save", save)


def _unwritable_folder(monkeypatch, name):
    real = ck.tempfile.mkstemp

    def mkstemp(*args, prefix="", **kwargs):
        if name in prefix:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(ck.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "fault, words",
    [
        (_full_disk_at_replace, ["No space left on device", "free space"]),
        (_full_disk_mid_write, ["No space left on device", "free space"]),
        (_unwritable_folder, ["Permission denied", "writable"]),
    ],
    ids=["enospc-rename", "enospc-write", "eacces"],
)
def test_checkpoint_write_fails_cleanly_and_keeps_the_previous_one(
    capsys, monkeypatch, data, straight, tmp_path, fault, words
):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        fault(m, "0000004.pt")
        code, _, err = run_cli(capsys, train_args(data, run, *COMMON))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "0000004.pt" in errors[0] and all(w in errors[0] for w in words), errors[0]
    assert "0000002.pt" in errors[0], "the message should name the last good checkpoint"
    ckpts = run / "checkpoints"
    assert latest_checkpoint(ckpts).name == "0000002.pt" and load_checkpoint(ckpts / "0000002.pt")["step"] == 2
    assert not (ckpts / "0000004.pt").exists() and not list(ckpts.glob("*.tmp")), sorted(os.listdir(ckpts))
    # space is back: the run continues from step 2 to the same weights as the straight run
    code, _, err = run_cli(capsys, train_args(data, run, *COMMON, "--resume", "auto"))
    assert code == 0, err
    assert assert_states_close(straight, final_state(run), atol=0.0) == 0.0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("name", ["log.txt", "metrics.csv"])
def test_full_disk_while_logging_is_one_line(capsys, data, tmp_path, name):
    """Writes to /dev/full fail with ENOSPC: a real full disk for one file of the run folder."""
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to("/dev/full")
    code, _, err = run_cli(capsys, train_args(data, run, "--max-steps", "2", "--log-every", "1"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"cannot write {run / name}: No space left on device" in errors[0]


@pytest.mark.slow
def test_failed_checkpoint_write_stops_every_rank_without_a_hang(data, tmp_path):
    """2 gloo ranks; rank 0 cannot create checkpoints/ (a file of that name is in the way): both
    ranks stop with a one-line error within seconds, rank 1 included (it used to sit in the
    barrier after the save until rank 0's exit broke the connection or torchrun killed it)."""
    import time

    from tests.helpers.torchrun import run_torchrun

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    started = time.monotonic()
    proc = run_torchrun(train_args(data, run, "--max-steps", "2", "--ckpt-every", "1"), timeout=240, check=False)
    # both ranks share the stderr pipe: rank 1's line may land behind rank 0's progress bar
    errors = ["error:" + line.split("error:", 1)[1] for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]  # one line from each rank
    assert any(e.startswith("error: cannot write") for e in errors)  # rank 0 says why
    assert any(e.startswith("error: rank 0 could not write") for e in errors)  # rank 1 learned it
    assert all("0000001.pt" in e and "last good checkpoint: none" in e for e in errors), errors
    assert time.monotonic() - started < 200  # the gloo barrier timeout would be 30 minutes


def _full_disk_in_tensorboard_thread(monkeypatch, from_step: int) -> None:
    """TensorBoard's writer thread hits ENOSPC on the first event of step ``from_step`` (and after)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer import record_writer

    real = record_writer.RecordWriter.write

    def write(self, data):
        if event_pb2.Event.FromString(data).step >= from_step:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)


def test_full_disk_in_tensorboard_writer_thread_is_one_line(capsys, monkeypatch, data, straight, tmp_path):
    """The same one line as a full disk under metrics.csv, no thread traceback, checkpoint 2 intact,
    and once space is back the run resumes to the straight run's weights."""
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _full_disk_in_tensorboard_thread(m, from_step=3)
        code, _, err = run_cli(capsys, train_args(data, run, *COMMON, "--log-every", "1", "--tensorboard"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert errors[0] == (
        f"error: cannot write {run / 'tb'}: No space left on device; free space or fix permissions "
        "(checkpoints already written are kept)"
    )
    ckpts = run / "checkpoints"
    assert latest_checkpoint(ckpts).name == "0000002.pt" and load_checkpoint(ckpts / "0000002.pt")["step"] == 2
    assert ck.checksum_problem(ckpts / "0000002.pt") is None
    code, _, err = run_cli(
        capsys, train_args(data, run, *COMMON, "--log-every", "1", "--tensorboard", "--resume", "auto")
    )
    assert code == 0, err
    assert assert_states_close(straight, final_state(run), atol=0.0) == 0.0
