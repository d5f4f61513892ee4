"""`dit sample` draws the same pixels as before: every case of :mod:`tests.reference.sample_golden`
(Gaussian ddpm/ddim/dpm++2m, flow euler/heun/sde, fp32, cfg 1.5, seed 11) is redrawn from the
committed tiny checkpoints and must equal the committed ``.npz`` byte for byte (uint8 images
and labels). The files were written by the sampling code before it was refactored."""

from pathlib import Path

import numpy as np
import pytest

from tests.reference.sample_golden import CASES, DATA, sample_argv

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_gives_the_committed_pixels(case: str, tmp_path: Path):
    from dit.cli.main import main

    out = tmp_path / f"{case}.npz"
    assert main(sample_argv(case, out)) == 0
    with np.load(DATA / f"{case}.npz", allow_pickle=False) as want, np.load(out, allow_pickle=False) as got:
        assert want["arr_0"].dtype == got["arr_0"].dtype == np.uint8
        assert want["arr_0"].shape == got["arr_0"].shape == (6, 8, 8, 3)
        assert np.array_equal(want["arr_0"], got["arr_0"]), f"{case}: pixels moved"
        assert np.array_equal(want["arr_1"], got["arr_1"]), f"{case}: labels moved"


def test_the_cases_cover_both_objectives_and_differ():
    """The golden files are informative: each sampler gives other pixels (a model whose output
    ignored its input, or a sampler that ignored its name, would make them equal)."""
    images = {case: np.load(DATA / f"{case}.npz")["arr_0"] for case in CASES}
    assert {model for model, _ in CASES.values()} == {"gaussian", "flow"}
    names = sorted(images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.array_equal(images[a], images[b]), f"{a} and {b} give the same pixels"
