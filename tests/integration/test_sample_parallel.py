"""`dit sample` under torchrun: 2 gloo ranks write the byte-identical file of 1 process, and a
2-rank run resumes shards a 1-process run left (shards do not depend on who drew them)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dit.cli.main import main

from tests.helpers.sample import read_npz, sample_argv, trained_run
from tests.helpers.torchrun import run_torchrun


@pytest.mark.slow
def test_two_ranks_write_the_file_of_one_process_and_resume_its_shards(tmp_path):
    ckpt = trained_run(tmp_path)
    common = ["--num-samples", "7", "--batch-size", "2", "--sampler", "ddpm", "--cfg-scale", "2"]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert main(sample_argv(ckpt, one, *common, "--keep-shards")) == 0
    run_torchrun(sample_argv(ckpt, two, *common))
    a, b = read_npz(one), read_npz(two)
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    assert not (tmp_path / "two.npz.shards").exists()
    with open(f"{two}.protocol.json") as f:
        assert '"world_size": 2' in f.read()

    # Resume across world sizes: the 1-process shards minus two, finished by 2 ranks.
    shards = sorted((tmp_path / "one.npz.shards").glob("*.npz"))
    shards[0].unlink()
    shards[3].unlink()
    os.unlink(one)
    run_torchrun(sample_argv(ckpt, one, *common))
    assert read_npz(one)[0].tobytes() == a[0].tobytes()
    with open(f"{one}.protocol.json") as f:
        assert '"drawn_now": 2' in f.read()
