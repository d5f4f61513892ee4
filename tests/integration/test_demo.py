"""`dit demo` end to end through the CLI with a shortened preset: every artefact of the run folder is checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dit.cli.main import main
from dit.demo.pipeline import frame_indices, strip_scale

SHORT = [
    "--max-steps",
    "12",
    "--depth",
    "1",
    "--hidden-size",
    "32",
    "--num-heads",
    "2",
    "--batch-size",
    "32",
    "--log-every",
    "5",
    "--classifier-epochs",
    "1",
    "--classifier-width",
    "8",
    "--num-samples",
    "30",
    "--grid-per-class",
    "2",
    "--num-sampling-steps",
    "4",
    "--strip-frames",
    "4",
    "--strip-class",
    "7",
    "--image-size",
    "8",
    "--seed",
    "1",
    "--device",
    "cpu",
]
SIZE, PER_CLASS, STEPS, FRAMES, STRIP_CLASS = 8, 2, 4, 4, 7


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out), *SHORT]) == 0
    return out


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


@pytest.mark.slow
def test_grid_is_the_first_samples_one_row_per_class(run):
    from dit.sampling.writers import grid_image

    grid = _png(run / "grid.png")
    assert grid.shape == (10 * (SIZE + 2) + 2, PER_CLASS * (SIZE + 2) + 2, 3)
    with np.load(run / "samples.npz") as f:
        images, labels = f["arr_0"], f["arr_1"]
    assert images.shape == (30, SIZE, SIZE, 3) and (labels == np.arange(30) % 10).all()
    np.testing.assert_array_equal(grid, grid_image(images[:20], labels[:20].tolist()))
    assert json.loads((run / "samples.npz.protocol.json").read_text())  # `dit sample`'s card


@pytest.mark.slow
def test_denoising_strip_ends_at_the_sampled_digit(run):
    strip = _png(run / "denoising.png")
    f = len(frame_indices(STEPS + 1, FRAMES))
    scale, pad = strip_scale(SIZE), 1
    assert strip.shape == ((2 * (SIZE + pad) + pad) * scale, (f * (SIZE + pad) + pad) * scale, 3)
    # Last x_t frame (top row) = sample STRIP_CLASS of samples.npz (same seed and index; batch of 1 vs 30,
    # so float summation order may move a pixel by a level or two).
    top, left = pad * scale, (pad + (f - 1) * (SIZE + pad)) * scale
    last = strip[top : top + SIZE * scale : scale, left : left + SIZE * scale : scale]
    with np.load(run / "samples.npz") as npz:
        sample = npz["arr_0"][STRIP_CLASS]
    assert np.abs(last.astype(int) - sample.astype(int)).max() <= 2
    first = strip[top : top + SIZE * scale : scale, pad * scale : (pad + SIZE) * scale : scale]
    assert first.std() > 30  # the first frame is noise


@pytest.mark.slow
def test_loss_curve_and_metrics(run):
    assert _png(run / "loss_curve.png").shape == (360, 640, 3)
    m = json.loads((run / "metrics.json").read_text())
    for key in ("class_agreement", "fid", "fid_real_vs_real"):
        assert math.isfinite(m[key]), key
    for part in ("samples", "real_vs_real"):
        for key in ("fid", "sfid", "inception_score", "precision", "recall", "class_accuracy"):
            assert math.isfinite(m[part][key]), (part, key)
    assert 0 <= m["class_agreement"] <= 1 and set(m["per_class_agreement"]) == {str(c) for c in range(10)}
    assert 0 <= m["classifier"]["test_accuracy"] <= 1 and m["classifier"]["num_test"] > 1000
    # steps come from the checkpoint, not the last log line (every 5 steps: 10)
    assert m["train"]["steps"] == 12 and m["train"]["last_logged_step"] == 10 and math.isfinite(m["train"]["loss"])
    assert m["sampling"]["num_samples"] == 30 and m["seconds"]["total"] > 0
    for path in m["files"].values():
        assert Path(path).exists(), path


@pytest.mark.slow
def test_checkpoint_loads_and_config_is_recorded(run):
    from dit.weights.formats import load_model

    cfg = json.loads((run / "demo.json").read_text())
    assert cfg["config"]["max_steps"] == 12 and cfg["config"]["image_size"] == SIZE
    assert set(cfg["commands"]) == {"train-classifier", "train", "sample", "eval-samples", "eval-real"}
    ckpt = cfg["checkpoint"]
    assert ckpt.endswith("0000012.pt") and cfg["commands"]["sample"].count(ckpt) == 1
    model = load_model(ckpt).model
    assert model.num_classes == 10 and tuple(model.input_size) == (SIZE, SIZE) and not model.learn_sigma  # flow
    assert (run / "train" / "run.json").is_file() and (run / "classifier.safetensors").is_file()


@pytest.mark.slow
def test_rerun_needs_resume_and_resume_finishes_the_same_run(run, capsys):
    assert main(["demo", "--out", str(run), *SHORT]) == 2
    assert "--resume" in capsys.readouterr().err
    classifier = (run / "classifier.safetensors").stat().st_mtime_ns
    assert main(["demo", "--out", str(run), "--resume", *SHORT]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["train"]["steps"] == 12 and m["train"]["checkpoint"].endswith("0000012.pt")  # nothing retrained
    assert (run / "classifier.safetensors").stat().st_mtime_ns == classifier
