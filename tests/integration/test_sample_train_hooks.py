"""`dit train --sample-every/--eval-every`: EMA grids with cards, metrics logged beside the loss,
computed on the same generation path as `dit sample` (checked by recomputing them)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dit.cli.main import main
from dit.config import GenerationRequest, ModelConfig
from dit.diffusion import create_diffusion
from dit import sampling as gen
from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier
from dit.evaluation.evaluate import compute_metrics, reference_arrays
from dit.evaluation.features import classifier_extractor
from dit.models import build_model
from dit.vae import PixelCodec

from tests.helpers.sample import read_npz
from tests.helpers.train import final_state, make_image_folder, train_args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    data = make_image_folder(root / "data")  # 3 classes × 8 images
    torch.manual_seed(0)
    clf = save_classifier(
        SmallClassifier(ClassifierArch(num_classes=3, image_size=8, width=4, feature_dim=16)), root / "clf.safetensors"
    )
    run = root / "run"
    argv = train_args(
        data,
        run,
        "--max-steps",
        "4",
        "--log-every",
        "2",
        "--sample-every",
        "2",
        "--eval-every",
        "4",
        "--num-sampling-steps",
        "2",
        "--eval-samples",
        "9",
        "--eval-features",
        f"classifier:{clf}",
        "--tensorboard",
    )
    assert main(argv) == 0
    return run, clf


def test_grids_with_cards_every_k_steps(run):
    run, _ = run
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["0000002.png", "0000004.png"]
    grid = np.asarray(Image.open(run / "samples" / "0000004.png"))
    assert grid.shape == (3 * 10 + 2, 4 * 10 + 2, 3)  # 3 classes × 4 EMA samples of 8×8
    card = json.loads((run / "samples" / "0000004.png.protocol.json").read_text())
    assert card["settings"]["checkpoint"]["step"] == 4 and card["settings"]["num_sampling_steps"] == 2
    assert card["settings"]["cfg_scale"] == 4.0 and card["settings"]["class_labels"]["labels"] == [0, 1, 2]


def test_metrics_logged_beside_the_loss_and_reproducible_from_the_checkpoint(run):
    run, clf = run
    rows = list(csv.DictReader(open(run / "eval_metrics.csv")))
    assert [r["step"] for r in rows] == ["4"]
    result = json.loads((run / "eval" / "0000004.json").read_text())
    for key in ("fid", "sfid", "inception_score", "precision", "recall", "class_accuracy"):
        assert np.isfinite(result[key]) and float(rows[0][key]) == pytest.approx(result[key], rel=1e-6)
    assert result["num_samples"] == 9 and result["protocol"]["settings"]["cfg_scale"] == 1.0
    assert result["reference_statistics"]["source"] == "recomputed"  # training images: no stored statistics
    assert len(result["not_comparable_because"]) == 3  # 9 samples, recomputed, classifier features
    assert "eval fid=" in (run / "log.txt").read_text()
    assert any(p.name.endswith(".eval") for p in (run / "tb").iterdir())  # TensorBoard scalars eval/*
    assert [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [2, 4]  # loss rows untouched

    ref_images, ref_labels = read_npz(run / "eval" / "reference.npz")  # the training images, centre-cropped
    assert ref_images.shape == (24, 8, 8, 3) and sorted(set(ref_labels.tolist())) == [0, 1, 2]

    state = final_state(run)  # step 4: the EMA the hook sampled from
    assert state["step"] == 4
    model = build_model(ModelConfig.from_dict(state["config"]["model"]))
    model.load_state_dict(state["ema"], strict=True)
    sampler = gen.ImageSampler(
        model,
        create_diffusion(""),
        PixelCodec(),
        GenerationRequest(sampler="ddpm", num_sampling_steps=2, cfg_scale=1.0, seed=7),
    )
    labels = gen.sample_labels(9, 3)
    images = sampler.images(list(range(9)), labels)
    ex = classifier_extractor(str(clf))
    again = compute_metrics(ex.features(images), reference_arrays(ex.features(ref_images)), labels)
    for key in ("fid", "sfid", "inception_score", "precision", "recall", "class_accuracy"):
        assert again[key] == pytest.approx(result[key], rel=1e-5, abs=1e-6), key


def test_bad_eval_settings_fail_before_training(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=2)
    argv = train_args(
        data,
        tmp_path / "run",
        "--max-steps",
        "1",
        "--eval-every",
        "1",
        "--eval-features",
        f"classifier:{tmp_path / 'missing.safetensors'}",
    )
    assert main(argv) == 2
    assert "classifier file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
