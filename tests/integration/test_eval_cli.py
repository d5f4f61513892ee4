"""`dit train-classifier` and `dit eval` end to end through the command line, on tiny files."""

import json

import numpy as np
import pytest
import torch

from dit.cli.main import main
from dit.evaluation import inception, metrics
from dit.evaluation.features import make_extractor
from tests.helpers.classifier import bars_dataset, cli_trained_classifier

KEYS = ("fid", "sfid", "inception_score", "precision", "recall")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A classifier trained through the CLI, plus sample/reference files of the same task."""
    d = tmp_path_factory.mktemp("evalcli")
    cli_trained_classifier(d, n_per_class=40, epochs=5)
    xs, ys = bars_dataset(n_per_class=10, seed=1)
    xr, _ = bars_dataset(n_per_class=10, seed=2)
    np.savez(d / "samples.npz", xs, ys)
    np.savez(d / "ref.npz", xr)
    return d


def _eval(d, *extra):
    out = d / "res.json"
    rc = main(["eval", str(d / "samples.npz"), str(d / "ref.npz"), "--out", str(out), *extra])
    return rc, (json.loads(out.read_text()) if rc == 0 else None)


def test_train_classifier_reports_held_out_accuracy(classifier_run, capsys):
    meta = json.loads((classifier_run / "clf.json").read_text())
    assert meta["num_val"] == 16 and meta["val_accuracy"] >= 0.9


def test_eval_with_classifier_features(classifier_run):
    d = classifier_run
    card = {"cfg_scale": 1.5, "sampler": "ddpm", "num_sampling_steps": 250}
    (d / "samples.npz.protocol.json").write_text(json.dumps(card))
    rc, res = _eval(d, "--features", f"classifier:{d / 'clf.safetensors'}", "--batch-size", "16")
    assert rc == 0
    for k in KEYS + ("class_accuracy",):
        assert np.isfinite(res[k]), k
    assert res["class_accuracy"] >= 0.9 and set(res["per_class_accuracy"]) == {"0", "1", "2", "3"}
    assert {k: res["protocol"][k] for k in card} == card
    assert list(d.glob("ref.npz.*.features.npz")), "reference features were not cached beside the reference"

    # Second path: the same numbers from the library pieces directly.
    ext = make_extractor(f"classifier:{d / 'clf.safetensors'}")
    fs = ext.features(np.load(d / "samples.npz")["arr_0"])
    fr = ext.features(np.load(d / "ref.npz")["arr_0"])
    fid = metrics.frechet_distance(metrics.feature_statistics(fs["pool"]), metrics.feature_statistics(fr["pool"]))
    assert res["fid"] == pytest.approx(fid, rel=1e-4)
    assert (res["precision"], res["recall"]) == pytest.approx(metrics.precision_recall(fr["pool"], fs["pool"]))

    # The cached reference gives the same result (into the same --out, replacing the first result).
    rc, again = _eval(d, "--features", f"classifier:{d / 'clf.safetensors'}", "--batch-size", "16", "--overwrite")
    assert rc == 0 and {k: again[k] for k in KEYS} == pytest.approx({k: res[k] for k in KEYS}, rel=1e-9)


def test_eval_of_reference_against_itself(classifier_run):
    d = classifier_run
    rc = main(
        [
            "eval",
            str(d / "ref.npz"),
            str(d / "ref.npz"),
            "--features",
            f"classifier:{d / 'clf.safetensors'}",
            "--out",
            str(d / "self.json"),
            "--no-cache",
        ]
    )
    res = json.loads((d / "self.json").read_text())
    # 40 images in 128 dims: rank-deficient covariances, where sqrtm's error is ~1e-6 (not 1e-12).
    assert rc == 0 and abs(res["fid"]) < 1e-4 and abs(res["sfid"]) < 1e-4
    assert res["precision"] == 1.0 and res["recall"] == 1.0
    assert "class_accuracy" not in res  # the reference file has no labels


@pytest.mark.slow
def test_eval_with_random_weight_inception_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DIT_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "inception.pth"
    torch.save(inception.random_weights(seed=0).state_dict(), weights)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "samples.npz", rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), np.arange(6))
    np.savez(tmp_path / "ref.npz", rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8))
    rc, res = _eval(tmp_path, "--inception", str(weights), "--batch-size", "4")
    assert rc == 0
    for k in KEYS:
        assert np.isfinite(res[k]), k
    assert 1.0 <= res["inception_score"] <= 1008 and res["is_splits"] == 1 and res["is_split_size"] == 5000
    assert res["features"].startswith("inception-") and "class_accuracy" not in res


def test_missing_inception_file_exits_2_with_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIT_CACHE", str(tmp_path / "cache"))
    np.savez(tmp_path / "samples.npz", np.zeros((4, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "ref.npz", np.zeros((4, 8, 8, 3), np.uint8))
    rc, _ = _eval(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: ") and inception.WEIGHTS_FILENAME in err[0] and "--inception" in err[0]


def test_bad_samples_file_exits_2(tmp_path, capsys):
    np.savez(tmp_path / "samples.npz", np.zeros((4, 8, 8, 3), np.float32))
    np.savez(tmp_path / "ref.npz", np.zeros((4, 8, 8, 3), np.uint8))
    d = tmp_path
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    save_classifier(SmallClassifier(ClassifierArch(num_classes=2, image_size=8, width=4)), d / "c.safetensors")
    rc, _ = _eval(d, "--features", f"classifier:{d / 'c.safetensors'}")
    assert rc == 2 and "uint8" in capsys.readouterr().err
