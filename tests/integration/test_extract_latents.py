"""`dit extract-latents` end to end: CLI, resume, bad input exit codes, and torchrun with 2 ranks."""

import pytest
import torch

from dit.cli.main import main
from dit.data import LatentCacheDataset, build_source, read_header
from dit.vae import load_codec
from tests.helpers.data import make_image_folder, save_tiny_vae
from tests.helpers.torchrun import run_torchrun


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xl")
    return save_tiny_vae(tmp / "vae"), make_image_folder(tmp / "data", classes=("x", "y"), per_class=3)


def _args(vae, data, out, *extra):
    return [
        "extract-latents",
        "--data-path",
        str(data),
        "--vae",
        str(vae),
        "--image-size",
        "8",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--device",
        "cpu",
        *extra,
    ]


def test_cli_extracts_and_resumes(inputs, tmp_path, capsys):
    vae, data = inputs
    assert main(_args(vae, data, tmp_path / "c")) == 0
    out = capsys.readouterr().out
    assert out.count("images encoded") == 3 and "6 images x 2 (mirror)" in out
    header = read_header(tmp_path / "c")
    assert header["num_items"] == 6 and header["class_names"] == ["x", "y"]
    src = build_source(tmp_path / "c", 8, load_codec(str(vae)), num_classes=2)
    assert src.kind == "cache" and len(src.dataset) == 6
    assert main(_args(vae, data, tmp_path / "c")) == 0  # second run: nothing to do
    assert capsys.readouterr().out.count("already done") == 3


def test_cli_bad_input_exits_2(inputs, tmp_path, capsys):
    vae, data = inputs
    assert main(_args(vae, tmp_path / "missing", tmp_path / "c")) == 2
    assert main(_args(vae, data, tmp_path / "c", "--num-classes", "3")) == 2
    assert main(_args(vae, data, tmp_path / "c")) == 0
    assert main(_args(vae, data, tmp_path / "c", "--image-size", "16")) == 2  # the cache is not overwritten
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "does not exist" in err[0] and "--num-classes 3" in err[1] and "image size 8" in err[2]
    assert read_header(tmp_path / "c")["image_size"] == 8


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(inputs, tmp_path):
    vae, data = inputs
    assert main(_args(vae, data, tmp_path / "one")) == 0
    done = run_torchrun(_args(vae, data, tmp_path / "two"))
    # Rank 0 logs only its own shards (1 and 3 of 3); rank 1 encoded shard 2.
    assert "shard 1/3" in done.stdout and "shard 3/3" in done.stdout and "shard 2/3" not in done.stdout
    a, b = LatentCacheDataset(tmp_path / "one"), LatentCacheDataset(tmp_path / "two")
    assert len(a) == len(b) == 6
    for i in range(6):
        assert a[i][1] == b[i][1]
        # Same batches; only the thread count differs (OMP_NUM_THREADS=1 in the ranks).
        torch.testing.assert_close(a[i][0], b[i][0], rtol=0, atol=1e-6)
