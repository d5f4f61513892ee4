"""``--resume auto`` past a damaged newest checkpoint: the SHA-256 saved beside each checkpoint
catches a flipped byte that ``torch.load`` reads without complaint, a truncated file is caught by
loading, and the run continues from the newest intact checkpoint to exactly the weights of an
uninterrupted run. An explicit ``--resume FILE`` that is damaged stays an error."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from dit.runtime.checkpoint import (
    checksum_path,
    list_checkpoints,
    load_checkpoint,
    newest_intact_checkpoint,
    save_checkpoint,
)

from tests.helpers.train import assert_states_close, final_state
from .helpers import assert_refused, run_cli, train_args

pytestmark = pytest.mark.faults

COMMON = ["--max-steps", "6", "--ckpt-every", "2", "--keep-last", "0"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints 2, 4 and 6 (and their checksums)."""
    from dit.cli.main import main

    run = tmp_path_factory.mktemp("fallback") / "straight"
    assert main(train_args(data, run, *COMMON)) == 0
    return run


def flip_a_weight_byte(ckpt: Path) -> None:
    """Invert one byte inside the largest tensor's data: the zip stays valid and torch.load reads it."""
    with zipfile.ZipFile(ckpt) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    raw = bytearray(ckpt.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0xFF
    ckpt.write_bytes(bytes(raw))


def _copy(straight: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    return run


def test_every_checkpoint_has_a_matching_sha256(straight):
    ckpts = list_checkpoints(straight / "checkpoints")
    assert [p.name for p in ckpts] == ["0000002.pt", "0000004.pt", "0000006.pt"]
    for p in ckpts:
        digest, name = checksum_path(p).read_text().split()
        assert name == p.name and digest == hashlib.sha256(p.read_bytes()).hexdigest()  # `sha256sum -c` format


def test_a_flipped_byte_loads_silently_but_is_caught_by_the_checksum(straight, tmp_path):
    run = _copy(straight, tmp_path)
    newest = run / "checkpoints" / "0000006.pt"
    flip_a_weight_byte(newest)
    load_checkpoint(newest)  # the damage is invisible to torch.load: only the checksum tells
    found, skipped = newest_intact_checkpoint(run / "checkpoints")
    assert found.name == "0000004.pt"
    assert [p.name for p, _ in skipped] == ["0000006.pt"] and "damaged after the save" in skipped[0][1]


@pytest.mark.parametrize("damage", ["flip", "truncate", "truncate-no-checksum"])
def test_resume_auto_falls_back_to_the_newest_intact_checkpoint(capsys, data, straight, tmp_path, damage):
    run = _copy(straight, tmp_path)
    newest = run / "checkpoints" / "0000006.pt"
    if damage == "flip":
        flip_a_weight_byte(newest)
    else:  # power lost while the disk wrote it back, or a copy that stopped half-way
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
        if damage == "truncate-no-checksum":
            checksum_path(newest).unlink()
    code, _, err = run_cli(capsys, train_args(data, run, *COMMON, "--resume", "auto"))
    assert code == 0, err
    assert f"--resume auto skipped {newest}:" in err, err  # says which one it skipped and why
    reason = {
        "flip": "damaged after the save",
        "truncate": "damaged after the save",
        "truncate-no-checksum": "has no checksum and does not load",
    }[damage]
    assert reason in err
    assert "resumed from" in err and "0000004.pt at step 4" in err
    # steps 5 and 6 again: the rewritten checkpoint 6 equals the uninterrupted run's, bit for bit
    assert assert_states_close(final_state(straight), final_state(run), atol=0.0) == 0.0
    assert newest_intact_checkpoint(run / "checkpoints") == (newest, [])


def test_explicit_resume_of_a_damaged_checkpoint_is_an_error(capsys, data, straight, tmp_path):
    run = _copy(straight, tmp_path)
    newest = run / "checkpoints" / "0000006.pt"
    flip_a_weight_byte(newest)
    line = assert_refused(
        capsys,
        train_args(data, tmp_path / "other", *COMMON, "--resume", newest),
        tmp_path,
        "is damaged",
        "damaged after the save",
    )
    assert str(newest) in line


def test_resume_auto_with_no_intact_checkpoint_is_an_error(capsys, data, straight, tmp_path):
    run = _copy(straight, tmp_path)
    for p in list_checkpoints(run / "checkpoints"):
        flip_a_weight_byte(p)
    line = assert_refused(
        capsys,
        train_args(data, run, *COMMON, "--resume", "auto"),
        tmp_path,
        "no intact checkpoint",
        "0000002.pt",
        "0000006.pt",
    )
    assert "another --results-dir" in line


def test_checkpoint_without_checksum_that_loads_is_accepted(tmp_path):
    """Checkpoints from before checksums existed (or killed between the two writes) still resume."""
    save_checkpoint({"step": 1, "w": torch.ones(3)}, tmp_path / "0000001.pt")
    save_checkpoint({"step": 2, "w": torch.ones(3)}, tmp_path / "0000002.pt")
    checksum_path(tmp_path / "0000002.pt").unlink()
    assert newest_intact_checkpoint(tmp_path) == (tmp_path / "0000002.pt", [])
