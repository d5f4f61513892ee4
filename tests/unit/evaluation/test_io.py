"""Loading image sets, the reference-feature cache, protocol cards and class accuracy."""

import json

import numpy as np
import pytest
from PIL import Image

from dit.errors import UserError
from dit.evaluation import io
from dit.evaluation.evaluate import class_accuracy


def _imgs(n=4, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_npz_round_trip_with_and_without_labels(tmp_path):
    x = _imgs()
    np.savez(tmp_path / "a.npz", x, np.arange(4))
    s = io.load_images(tmp_path / "a.npz")
    np.testing.assert_array_equal(s.images, x)
    assert s.labels.dtype == np.int64 and list(s.labels) == [0, 1, 2, 3]
    np.savez(tmp_path / "b.npz", x)
    assert io.load_images(tmp_path / "b.npz").labels is None


def test_grey_npz_becomes_rgb(tmp_path):
    g = _imgs()[..., 0]  # (N, H, W)
    np.savez(tmp_path / "g.npz", g)
    s = io.load_images(tmp_path / "g.npz")
    assert s.images.shape == (4, 6, 5, 3) and (s.images[..., 2] == g).all()


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"arr_0": np.zeros((2, 4, 4, 3), np.float32)}, "uint8"),
        ({"arr_0": np.zeros((2, 4, 4, 2), np.uint8)}, "shape"),
        ({"arr_0": np.zeros((2, 4, 4, 3), np.uint8), "arr_1": np.zeros(3, np.int64)}, "labels"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8)}, "arr_0"),
    ],
)
def test_bad_npz_is_a_user_error(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=match):
        io.load_images(tmp_path / "bad.npz")


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        io.load_images(tmp_path / "nope.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="expected an .npz"):
        io.load_images(tmp_path / "x.txt")


def test_png_folders_flat_and_by_class(tmp_path):
    x = _imgs()
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, im in enumerate(x):
        Image.fromarray(im).save(flat / f"{i:03d}.png")
    s = io.load_images(flat)
    np.testing.assert_array_equal(s.images, x)
    assert s.labels is None
    tree = tmp_path / "tree"
    for i, im in enumerate(x):
        (tree / f"class_{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tree / f"class_{i % 2}" / f"{i}.png")
    s = io.load_images(tree)
    assert list(s.labels) == [0, 0, 1, 1]
    np.testing.assert_array_equal(s.images, x[[0, 2, 1, 3]])
    Image.fromarray(_imgs(1, 9, 9)[0]).save(flat / "big.png")
    with pytest.raises(UserError, match="differ in size"):
        io.load_images(flat)


def test_feature_cache_round_trip_keyed_by_content_and_extractor(tmp_path):
    ref = tmp_path / "ref.npz"
    np.savez(ref, _imgs())
    arrays = {"pool": np.ones((4, 3), np.float32), "mu": np.zeros(3)}
    assert io.load_cached_features(ref, "ext-a") is None
    path = io.save_cached_features(ref, "ext-a", arrays)
    assert path.parent == tmp_path and "ext-a" in path.name
    got = io.load_cached_features(ref, "ext-a")
    np.testing.assert_array_equal(got["pool"], arrays["pool"])
    assert io.load_cached_features(ref, "ext-b") is None  # another extractor
    np.savez(ref, _imgs(seed=1))  # new content → new key
    assert io.load_cached_features(ref, "ext-a") is None


def test_protocol_card_lookup(tmp_path):
    samples = tmp_path / "s.npz"
    np.savez(samples, _imgs())
    assert io.read_protocol_card(samples) is None
    (tmp_path / "s.npz.protocol.json").write_text(json.dumps({"cfg_scale": 1.5}))
    card = io.read_protocol_card(samples)
    assert card["cfg_scale"] == 1.5 and card["path"].endswith("s.npz.protocol.json")
    (tmp_path / "s.npz.protocol.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        io.read_protocol_card(samples)


def test_class_accuracy_overall_and_per_class():
    logits = np.eye(3)[[0, 1, 2, 2, 0, 1]]  # predictions 0 1 2 2 0 1
    labels = np.array([0, 1, 2, 1, 1, 1])
    acc, per = class_accuracy(logits, labels)
    assert acc == pytest.approx(4 / 6) and per == {"0": 1.0, "1": 0.5, "2": 1.0}
    with pytest.raises(UserError, match="classes"):
        class_accuracy(logits, np.array([0, 1, 2, 3, 0, 0]))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("grey", [False, True])
def test_streamed_npz_batches_equal_the_loaded_array(tmp_path, save, grey):
    x = _imgs(n=10)
    arr = x[..., 0] if grey else x
    save(tmp_path / "s.npz", arr, np.arange(10))
    n, batches, labels = io.image_batches(tmp_path / "s.npz", batch_size=4)
    got = list(batches)
    assert n == 10 and [len(b) for b in got] == [4, 4, 2] and list(labels) == list(range(10))
    np.testing.assert_array_equal(np.concatenate(got), io.load_images(tmp_path / "s.npz").images)


def test_streaming_falls_back_to_validating_loader(tmp_path):
    np.savez(tmp_path / "f.npz", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(UserError, match="uint8"):
        io.image_batches(tmp_path / "f.npz", 4)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, im in enumerate(_imgs(n=3)):
        Image.fromarray(im).save(folder / f"{i}.png")
    n, batches, labels = io.image_batches(folder, 2)
    assert n == 3 and labels is None and [len(b) for b in batches] == [2, 1]
