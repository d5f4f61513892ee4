"""`dit sample` keeps its resolved settings beside the output; passing them back draws the same images."""

from __future__ import annotations

import numpy as np
import pytest

from dit.cli.main import main
from dit.config.files import load_toml

from tests.helpers.sample import read_npz, sample_argv

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_saved_settings_draw_the_same_images(ckpt, tmp_path):
    first, again = tmp_path / "first.npz", tmp_path / "again.npz"
    argv = sample_argv(ckpt, first, "--num-samples", "4", "--class-labels", "2", "0", "--seed", "3", "--cfg-scale", "2")
    assert main(argv) == 0
    saved = tmp_path / "first.npz.config.toml"
    settings = load_toml(saved)
    assert settings["request"]["class_labels"] == [2, 0] and settings["request"]["seed"] == 3
    assert settings["sample"]["ckpt"] == str(ckpt)
    assert main(["sample", "--config", str(saved), "--out", str(again)]) == 0
    a, b = read_npz(first), read_npz(again)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
