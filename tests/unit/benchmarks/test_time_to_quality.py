"""benchmarks/time_to_quality.py: the time-to-quality rule and the ratio (with its lower-bound case), the FLOPs
axis against the model's own count, and a tiny end-to-end run whose class agreement is recomputed directly from the
classifier and the samples file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import time_to_quality as ttq


def row(step, agreement, fid):
    return {
        "step": step,
        "train_flops": 10 * step,
        "cpu_minutes": step / 100,
        "wall_minutes": step / 50,
        "class_agreement": agreement,
        "fid": fid,
    }


def test_time_to_quality_is_the_first_step_meeting_both_targets():
    rows = [row(300, 0.97, 1.9), row(100, 0.96, 5.0), row(200, 0.90, 1.0), row(400, 0.99, 1.0)]
    assert ttq.time_to_quality(rows, fid_real=1.0)["step"] == 300  # 100: FID 5 > 2×1; 200: agreement < 95%
    assert ttq.time_to_quality(rows, fid_real=0.5)["step"] == 400  # 1.9 > 2×0.5
    assert ttq.time_to_quality(rows, fid_real=0.1) is None
    assert ttq.meets_target(row(1, 0.95, 2.0), 1.0)  # both boundaries count


def test_ratio_and_its_lower_bound_when_paper_never_gets_there():
    fast = [row(100, 0.5, 9.0), row(200, 0.96, 1.0)]
    v = ttq.verdict({"fast": fast, "paper": [row(1000, 0.5, 9), row(1500, 0.97, 1.5)]}, 1.0)
    assert v["ratio"] == pytest.approx(7.5) and not v["ratio_is_lower_bound"] and v["met"]
    v = ttq.verdict({"fast": fast, "paper": [row(500, 0.5, 9), row(800, 0.6, 8)]}, 1.0, key="cpu_minutes")
    assert v["paper"] is None and v["ratio"] == pytest.approx(4.0) and v["ratio_is_lower_bound"] and not v["met"]
    assert ttq.verdict({"fast": [row(1, 0.1, 9)], "paper": []}, 1.0)["ratio"] is None


def test_photos_agreement_target_is_relative_to_real_crops():
    assert ttq.agreement_target("digits", None) == ttq.AGREEMENT_TARGET
    target = ttq.agreement_target("photos", 0.9)
    assert target == pytest.approx(0.75)
    assert ttq.meets_target(row(1, 0.76, 2.0), 1.0, target) and not ttq.meets_target(row(1, 0.76, 2.0), 1.0)
    assert ttq.time_to_quality([row(100, 0.74, 1.0), row(200, 0.8, 1.0)], 1.0, target)["step"] == 200


def test_flops_per_step_is_six_forward_macs_per_image_and_counts_the_learned_sigma_head():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dit.config import ModelConfig
    from dit.models import build_model

    model = dict(depth=2, hidden_size=64, num_heads=2, patch_size=4)
    for recipe, learn_sigma in (("paper", True), ("fast", False)):
        net = build_model(
            ModelConfig(name=None, input_size=16, in_channels=3, num_classes=10, learn_sigma=learn_sigma, **model)
        )
        x, t, y = torch.randn(1, 3, 16, 16), torch.tensor([5]), torch.tensor([1])
        with FlopCounterMode(display=False) as counter:  # an independent count of the forward pass (2 FLOPs per MAC)
            net(x, t, y)
        got = ttq.train_flops_per_step(recipe, model, 16, batch=8)
        # the paper's convention (forward_macs) leaves out small terms (embedding tables, norms): a few % at this width
        assert got == pytest.approx(3 * counter.get_total_flops() * 8, rel=0.05)
    assert ttq.train_flops_per_step("paper", model, 16, 8) > ttq.train_flops_per_step("fast", model, 16, 8)


@pytest.mark.slow
def test_tiny_run_scores_every_checkpoint_of_both_recipes(tmp_path, capsys):
    from dit.evaluation.classifier import load_classifier
    from dit.evaluation.features import FeatureExtractor
    from dit.evaluation.io import load_images

    out, plot = tmp_path / "ttq", tmp_path / "ttq.png"
    status = ttq.main(
        [
            "--out",
            str(out),
            "--plot",
            str(plot),
            "--image-size",
            "8",
            "--style",
            "plain",
            "--copies",
            "1",
            "--depth",
            "1",
            "--hidden-size",
            "32",
            "--num-heads",
            "2",
            "--patch-size",
            "4",
            "--batch-size",
            "8",
            "--max-steps",
            "2",
            "--ckpt-every",
            "1",
            "--paper-max-steps",
            "4",
            "--paper-ckpt-every",
            "2",
            "--num-samples",
            "20",
            "--classifier-epochs",
            "1",
            "--classifier-width",
            "4",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "time_to_quality.json").read_text())
    assert set(r["results"]) == {"paper", "fast"} and r["fid_real_vs_real"] >= 0
    net = FeatureExtractor(load_classifier(out / "classifier.safetensors"), "c")
    for recipe, rows in r["results"].items():
        steps = {"fast": [1, 2], "paper": [2, 4]}[recipe]  # the paper run: longer, sparser checkpoints
        assert [x["step"] for x in rows] == steps
        per_step = r["runs"][recipe]["train_flops_per_step"]
        assert [x["train_flops"] for x in rows] == [s * per_step for s in steps]
        assert rows[0]["cpu_minutes"] == pytest.approx(rows[1]["cpu_minutes"] / 2)
        samples = load_images(out / recipe / "samples" / "0000002.npz")
        agreement = float((net.features(samples.images)["logits"].argmax(1) == samples.labels).mean())
        assert rows[1]["class_agreement"] == pytest.approx(agreement)
        assert rows[1]["sampler"] == {"paper": "dpm++2m", "fast": "heun"}[recipe]
    assert set(r["verdict"]) == {"train_flops", "cpu_minutes"}
    from PIL import Image

    assert Image.open(plot).size[0] > Image.open(plot).size[1]  # two panels side by side
    assert printed.count("| paper |") == 2 and printed.count("| fast |") == 2
    assert np.isfinite([x["fid"] for rows in r["results"].values() for x in rows]).all()
