"""EMA `.safetensors` exports carry a SHA-256 beside them, as `.pt` checkpoints do, and a file whose
bytes no longer match it is refused by every loader of weights (issue 27 item 12). A flipped byte in
a tensor's data is the case that matters: the file still parses, and its weights are silently wrong."""

import hashlib

import pytest

from dit.errors import UserError
from dit.runtime.checkpoint import checksum_path, ema_export_path
from dit.weights.formats import read_weights

from tests.faults.helpers import assert_refused
from tests.helpers.sample import trained_run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("run"))


def _flip_last_byte(path):
    """Flip a byte of the last tensor's data: safetensors still reads the file."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_ema_export_has_a_checksum_in_sha256sum_format(ckpt):
    ema = ema_export_path(ckpt)
    digest, name = checksum_path(ema).read_text().split()
    assert name == ema.name and digest == hashlib.sha256(ema.read_bytes()).hexdigest()
    assert read_weights(ema).weights == "ema"  # an intact export loads


@pytest.mark.parametrize("which", ["ema-export", "checkpoint"])
def test_a_damaged_file_is_refused_where_weights_are_read(capsys, ckpt, tmp_path, which):
    folder = tmp_path / "copy"
    folder.mkdir()
    source = ema_export_path(ckpt) if which == "ema-export" else ckpt
    copy = folder / source.name
    copy.write_bytes(source.read_bytes())
    checksum_path(copy).write_bytes(checksum_path(source).read_bytes())
    read_weights(copy)  # the copy is intact
    _flip_last_byte(copy)
    with pytest.raises(UserError, match="is damaged: its SHA-256"):
        read_weights(copy)
    out = tmp_path / "x.npz"
    argv = ["sample", "--ckpt", copy, "--out", out, "--num-samples", "2", "--num-sampling-steps", "2", "--no-progress"]
    assert_refused(capsys, argv, tmp_path, str(copy), "is damaged", "recorded in")
    assert_refused(capsys, ["convert", copy, tmp_path / "y.safetensors"], tmp_path, "is damaged")
