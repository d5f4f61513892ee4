"""The small classifier: learns a tiny synthetic task, round-trips through its file, rejects bad input."""

import numpy as np
import pytest
import torch

from dit.config import ClassifierTrainConfig
from dit.errors import UserError
from dit.evaluation.classifier import (
    ClassifierArch,
    SmallClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from dit.evaluation.features import make_extractor
from tests.helpers.classifier import bars_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("clf")
    x, y = bars_dataset()
    np.savez(d / "bars.npz", x, y)
    cfg = ClassifierTrainConfig(
        data_path=str(d / "bars.npz"),
        out=str(d / "clf.safetensors"),
        width=8,
        epochs=6,
        batch_size=32,
        val_fraction=0.25,
    )
    return train_classifier(cfg), cfg


def test_trains_to_high_held_out_accuracy(trained):
    result, _ = trained
    assert result["num_val"] == 60 and result["num_train"] == 180
    assert result["val_accuracy"] >= 0.95


def test_file_round_trip_and_feature_contract(trained):
    result, cfg = trained
    model = load_classifier(result["path"])
    assert model.arch == ClassifierArch(num_classes=4, image_size=8, width=8)
    x, y = bars_dataset(n_per_class=5, seed=1)
    feats = make_extractor(f"classifier:{result['path']}").features(x, batch_size=7)
    assert feats["pool"].shape == (20, 128) and feats["spatial"].shape == (20, 128) and feats["logits"].shape == (20, 4)
    with torch.no_grad():
        direct = model(torch.from_numpy(x))
    np.testing.assert_allclose(feats["logits"], direct["logits"].numpy(), rtol=1e-5, atol=1e-5)
    assert (feats["logits"].argmax(1) == y).mean() >= 0.9  # unseen images of the same task


def test_other_input_sizes_are_resized():
    model = SmallClassifier(ClassifierArch(num_classes=3, image_size=8, width=4)).eval()
    out = model(torch.zeros(2, 20, 12, 3, dtype=torch.uint8))
    assert out["logits"].shape == (2, 3)


def test_save_writes_readable_json(tmp_path):
    model = SmallClassifier(ClassifierArch(num_classes=3, image_size=8, width=4))
    save_classifier(model, tmp_path / "m.safetensors", info={"val_accuracy": 0.5})
    import json

    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["config"]["num_classes"] == 3 and meta["val_accuracy"] == 0.5


def test_bad_inputs_are_user_errors(tmp_path):
    x, _ = bars_dataset(n_per_class=2)
    np.savez(tmp_path / "nolabels.npz", x)
    with pytest.raises(UserError, match="no labels"):
        train_classifier(
            ClassifierTrainConfig(data_path=str(tmp_path / "nolabels.npz"), out=str(tmp_path / "c.safetensors"))
        )
    with pytest.raises(UserError, match=".safetensors"):
        train_classifier(ClassifierTrainConfig(data_path=str(tmp_path / "nolabels.npz"), out=str(tmp_path / "c.pt")))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not a classifier"):
        load_classifier(tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="not found"):
        make_extractor(f"classifier:{tmp_path / 'missing.safetensors'}")
    with pytest.raises(UserError, match="--features"):
        make_extractor("vgg")
