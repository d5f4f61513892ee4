"""Checkpoints: atomic writes, weights_only loading, latest by step, pruning, safetensors export."""

import os
import pickle

import pytest
import torch

from dit.errors import UserError
from dit.runtime import checkpoint as ck


def _state(v):
    return {"model": {"w": torch.full((3,), float(v))}, "step": int(v)}


def test_save_load_round_trip(tmp_path):
    path = ck.save_checkpoint(_state(5), ck.checkpoint_path(tmp_path, 5))
    assert path.name == "0000005.pt"
    state = ck.load_checkpoint(path)
    assert state["step"] == 5 and torch.equal(state["model"]["w"], torch.full((3,), 5.0))


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = ck.checkpoint_path(tmp_path, 1)
    ck.save_checkpoint(_state(1), path)
    before = path.read_bytes()

    def half_then_crash(f):
        f.write(b"PK\x03\x04 partial")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        ck.atomic_write(path, half_then_crash)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000001.pt", "0000001.pt.sha256"]


def test_stray_temp_file_is_never_taken_as_a_checkpoint(tmp_path):
    ck.save_checkpoint(_state(3), ck.checkpoint_path(tmp_path, 3))
    (tmp_path / ".0000009.pt.abc.tmp").write_bytes(b"torn")  # what a SIGKILL mid-write leaves
    assert ck.latest_checkpoint(tmp_path).name == "0000003.pt"
    assert [p.name for p in ck.remove_stray_temps(tmp_path)] == [".0000009.pt.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000003.pt", "0000003.pt.sha256"]


def test_latest_is_by_step_not_mtime_or_size(tmp_path):
    big_old_step = ck.save_checkpoint({"x": torch.zeros(1000), "step": 2}, tmp_path / "0000002.pt")
    ck.save_checkpoint(_state(10), tmp_path / "0000010.pt")
    ck.save_checkpoint(_state(9), tmp_path / "0000009.pt")
    os.utime(big_old_step, (4e9, 4e9))  # newest mtime and largest file, lowest step
    assert ck.latest_checkpoint(tmp_path).name == "0000010.pt"
    assert [ck.step_of(p) for p in ck.list_checkpoints(tmp_path)] == [2, 9, 10]
    assert ck.latest_checkpoint(tmp_path / "missing") is None


def test_prune_keeps_newest_k_with_their_checksums_and_ema_exports(tmp_path):
    for s in (1, 2, 3, 4):
        p = ck.save_checkpoint(_state(s), ck.checkpoint_path(tmp_path, s))
        ck.write_checksum(ck.export_safetensors({"w": torch.ones(2)}, ck.ema_export_path(p)))
    ck.prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0000003.ema.safetensors",
        "0000003.ema.safetensors.sha256",
        "0000003.pt",
        "0000003.pt.sha256",
        "0000004.ema.safetensors",
        "0000004.ema.safetensors.sha256",
        "0000004.pt",
        "0000004.pt.sha256",
    ]
    ck.prune_checkpoints(tmp_path, 0)  # 0 keeps all
    assert len(list(tmp_path.iterdir())) == 8


def test_truncated_and_foreign_files_raise_user_error(tmp_path):
    good = ck.save_checkpoint(_state(1), tmp_path / "0000001.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello")
    for name in ("cut.pt", "text.pt", "absent.pt"):
        with pytest.raises(UserError):
            ck.load_checkpoint(tmp_path / name)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_code_executing_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": _RunsCode()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(UserError):
        ck.load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


def test_unwritable_folder_is_a_user_error_and_keeps_old_file(tmp_path, monkeypatch):
    """The folder refuses new files (as a read-only folder does for a non-root user; root ignores modes,
    so the refusal is made by the OS call itself): one UserError, and the old checkpoint stays."""
    path = ck.save_checkpoint(_state(1), tmp_path / "0000001.pt")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(ck.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match="cannot write"):
        ck.save_checkpoint(_state(2), path)
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".sha256")) == ["0000001.pt"]


def test_a_file_where_the_folder_should_be_is_a_user_error(tmp_path):
    """No monkeypatching: a plain file named like the checkpoint folder fails for root too."""
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(UserError):
        ck.save_checkpoint(_state(1), tmp_path / "checkpoints" / "0000001.pt")


def test_safetensors_export_round_trip_with_metadata(tmp_path):
    from safetensors import safe_open

    tensors = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    path = ck.export_safetensors(
        tensors, tmp_path / "x.ema.safetensors", metadata={"model": {"depth": 2}, "note": "hi"}
    )
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"model": '{"depth": 2}', "note": "hi"}
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v)


def test_full_disk_is_a_user_error_and_keeps_old_file(tmp_path):
    import errno

    path = ck.save_checkpoint(_state(1), tmp_path / "0000001.pt")

    def disk_full(f):
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="No space left"):
        ck.atomic_write(path, disk_full)
    assert ck.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000001.pt", "0000001.pt.sha256"]
