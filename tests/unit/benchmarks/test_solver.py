"""benchmarks/solver_quality.py on a tiny random run-like folder: the verdict rule, model-evaluation
counts against the samplers' step counts (and guidance's doubled rows), and each row's FID against
the same configuration drawn by `dit sample`'s file path and scored by `dit eval`'s path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import solver_quality as sq
from dit.config import DiffusionConfig, EvalConfig, GenerationRequest, ModelConfig, SampleConfig
from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier
from dit.evaluation.evaluate import evaluate
from dit.sampling import generate_to_file
from dit.models import build_model

NUM_CLASSES = 3


def make_run(root):
    """A `dit demo`-shaped folder: a random tiny DiT checkpoint, a random classifier, 30 'held-out' images."""
    torch.manual_seed(0)
    mcfg = ModelConfig(
        name=None,
        depth=1,
        hidden_size=32,
        num_heads=2,
        patch_size=4,
        input_size=8,
        in_channels=3,
        num_classes=NUM_CLASSES,
        class_dropout_prob=0.1,
    )
    model = build_model(mcfg)
    with torch.no_grad():  # adaLN-Zero starts as the identity; random outputs give distinct samples
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    vae = {
        "id": "none",
        "source": "none",
        "scale_factor": 1.0,
        "shift_factor": 0.0,
        "latent_channels": 3,
        "downsample": 1,
    }
    config = {
        "model": dataclasses.asdict(mcfg),
        "diffusion": DiffusionConfig().to_dict(),
        "data": {"image_size": 8, "num_classes": NUM_CLASSES, "vae": vae},
    }
    (root / "train" / "checkpoints").mkdir(parents=True)
    torch.save({"config": config, "ema": model.state_dict(), "step": 1}, root / "train" / "checkpoints" / "0000001.pt")
    save_classifier(
        SmallClassifier(ClassifierArch(num_classes=NUM_CLASSES, image_size=8, width=4)), root / "classifier.safetensors"
    )
    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        d = root / "data" / "test" / str(c)
        d.mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (root / "demo.json").write_text(json.dumps({"config": {"cfg_scale": 2.0, "precision": "fp32", "seed": 3}}))
    return root


def test_verdict_is_the_smallest_step_count_within_the_margin():
    rows = [
        {"sampler": "a", "steps": 10, "fid": 12.0},
        {"sampler": "a", "steps": 20, "fid": 10.9},
        {"sampler": "a", "steps": 15, "fid": 11.0},
        {"sampler": "b", "steps": 5, "fid": 1.0},
    ]
    assert sq.verdict(rows, 10.0, "a") == 15  # 11.0 <= 1.10 x 10.0 (the boundary counts); 12.0 does not
    assert sq.verdict(rows, 9.0, "a") is None
    assert sq.verdict(rows, 10.0, "b") == 5


def test_tiny_run_counts_evaluations_and_matches_the_sample_and_eval_paths(tmp_path):
    run = sq.load_demo_run(make_run(tmp_path / "run"))
    n = 12
    result = sq.measure(
        run, n, ["dpm++2m", "ddim"], [2, 3], batch_size=8, seed=run.seed, device=torch.device("cpu"), say=lambda m: None
    )
    names = [r["name"] for r in result["rows"]]
    assert names == ["ddpm-250", "ddpm-250-seed4", "dpm++2m-2", "dpm++2m-3", "ddim-2", "ddim-3"]
    for r in result["rows"]:
        assert r["model_calls_per_sample"] == r["steps"]  # one network call per step (both chunks)
        assert r["model_rows_per_sample"] == 2 * r["steps"]  # guidance: conditional + unconditional rows
        assert np.isfinite(r["fid"]) and 0 <= r["class_agreement"] <= 1
    noise = result["ddpm_noise"]
    assert noise["abs_difference"] == pytest.approx(abs(noise["fid_seed_a"] - noise["fid_seed_b"]))
    assert noise["fid_seed_a"] != noise["fid_seed_b"]  # another seed draws other samples
    ref_fid = result["rows"][0]["fid"]
    want = sq.verdict(result["rows"][2:], ref_fid, "dpm++2m")
    assert result["verdict"]["dpm++2m"]["smallest_steps_within_10pct"] == want
    assert result["target_met"] == (want is not None and want <= 25)

    # the same configuration through `dit sample`'s file path and `dit eval`: the same FID
    out = tmp_path / "dpm3.npz"
    generate_to_file(
        SampleConfig(ckpt=str(run.checkpoint), out=str(out), progress=False),
        GenerationRequest(
            num_samples=n, sampler="dpm++2m", num_sampling_steps=3, cfg_scale=2.0, seed=run.seed, batch_size=8
        ),
    )
    ev = evaluate(
        EvalConfig(samples=str(out), reference=str(run.reference), features=f"classifier:{run.classifier}", cache=False)
    )
    row = next(r for r in result["rows"] if r["name"] == "dpm++2m-3")
    assert row["fid"] == pytest.approx(ev["fid"], rel=1e-6)
    assert row["class_agreement"] == pytest.approx(ev["class_accuracy"])
    assert "verdict dpm++2m" in sq.format_report(result)
