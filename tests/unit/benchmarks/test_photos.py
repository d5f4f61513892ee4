"""benchmarks/photos.py: the crops of the bundled photographs (class count, shapes, held-out regions that share
no source pixel with any training crop, the same boxes at every size, each file really cut from its box) and the
class-agreement probe (against scikit-learn's own prediction)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import photos

pytest.importorskip("skimage")  # a dev dependency (pyproject.toml): the photographs ship in its wheel


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return photos.build_photos(root, image_size=16, train_per_class=12, reference_per_class=4, seed=3)


def test_one_class_per_photograph_with_the_requested_counts_and_shapes(export):
    from dit.data.image_folder import ImageFolder
    from dit.evaluation.io import load_images

    assert len(export.classes) == len(photos.PHOTOS) >= 8
    assert ImageFolder(export.train_dir, 16).class_names == list(export.classes)  # what `dit train` reads
    for split, per_class in (("train", 12), ("reference", 4)):
        s = load_images(export.train_dir if split == "train" else export.reference_dir)
        labels = s.require_labels(split)
        assert s.images.shape == (per_class * len(photos.PHOTOS), 16, 16, 3) and s.images.dtype == np.uint8
        assert np.bincount(labels).tolist() == [per_class] * len(photos.PHOTOS)


def test_reference_crops_share_no_source_pixel_with_training_crops(export):
    manifest = json.loads((export.train_dir.parent / photos.MANIFEST).read_text())
    for entry in manifest["classes"].values():
        height, width = entry["shape"]
        covered = {split: np.zeros((height, width), bool) for split in photos.SPLITS}
        for split in photos.SPLITS:
            for top, left, side in entry[split]:
                assert 0 <= top and top + side <= height and 0 <= left and left + side <= width
                covered[split][top : top + side, left : left + side] = True
        assert not np.any(covered["train"] & covered["reference"])
        # the held-out tiles are one per tile row and per tile column, a quarter of a 4 × 4 grid
        tiles = entry["held_out_tiles"]
        assert len({t[0] for t in tiles}) == len({t[1] for t in tiles}) == photos.GRID


def test_the_same_seed_cuts_the_same_boxes_at_every_size_and_each_file_comes_from_its_box(export, tmp_path):
    from PIL import Image

    other = photos.build_photos(tmp_path, image_size=24, train_per_class=12, reference_per_class=4, seed=3)
    read = lambda root: json.loads((root / photos.MANIFEST).read_text())  # noqa: E731
    first, second = read(export.train_dir.parent), read(other.train_dir.parent)
    for name in first["classes"]:
        assert first["classes"][name]["train"] == second["classes"][name]["train"]
    # each file's mean colour is its source box's mean colour (resampling keeps the mean up to ringing)
    name, package, file = photos.PHOTOS[1]
    source = photos.load_photo(package, file).astype(np.float64)
    for i, (top, left, side) in enumerate(first["classes"][f"01_{name}"]["reference"]):
        crop = np.asarray(Image.open(export.reference_dir / f"01_{name}" / f"{i:06d}.png"), np.float64)
        box_mean = source[top : top + side, left : left + side].mean(axis=(0, 1))
        np.testing.assert_allclose(crop.mean(axis=(0, 1)), box_mean, atol=3.0)


def test_probe_predicts_as_scikit_learn_and_separates_separable_classes():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32)) * 3
    labels = np.repeat(np.arange(4), 50)
    feats = centres[labels] + rng.normal(size=(200, 32))
    probe = photos.fit_probe(feats, labels, c=0.5)
    test_labels = np.repeat(np.arange(4), 25)
    test = centres[test_labels] + rng.normal(size=(100, 32))
    mean, scale = feats.mean(0), feats.std(0) + 1e-6
    ref = LogisticRegression(C=0.5, max_iter=2000).fit((feats - mean) / scale, labels)
    np.testing.assert_array_equal(probe.predict(test), ref.predict((test - mean) / scale))
    assert probe.agreement(test, test_labels) > 0.95
    assert probe.agreement(test, (test_labels + 1) % 4) < 0.05


def test_real_floor_uses_the_first_n_training_features_and_the_textbook_frechet_distance():
    from scipy import linalg

    rng = np.random.default_rng(1)
    labels = np.tile(np.arange(3), 40)  # class-interleaved, as balanced_subset orders them
    feats = {
        "train": rng.normal(size=(120, 6)) + labels[:, None],
        "train_labels": labels,
        "reference": rng.normal(size=(60, 6)) + 0.5 + np.tile(np.arange(3), 20)[:, None],
        "reference_labels": np.tile(np.arange(3), 20),
        "train_b": rng.normal(size=(120, 6)) + 0.1 + labels[:, None],
    }
    floor, probe = photos.real_floor(feats, n=30)

    def textbook(a, b):
        mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))

    assert floor["num_real"] == 30
    assert floor["fid_real_vs_real"] == pytest.approx(textbook(feats["train"][:30], feats["reference"]), rel=1e-6)
    assert floor["fid_train_real_vs_real"] == pytest.approx(textbook(feats["train"][:30], feats["train_b"]), rel=1e-6)
    assert floor["real_agreement"] == probe.agreement(feats["reference"], feats["reference_labels"])
    with pytest.raises(ValueError):
        photos.real_floor(feats, n=121)


def test_scores_compare_samples_with_held_out_and_training_crops_and_cache_their_features(tmp_path, monkeypatch):
    from dit.sampling.writers import write_npz

    rng = np.random.default_rng(2)
    calls = []

    def fake_inception(images):  # a feature per image: its channel means and spreads (N, 6)
        calls.append(len(images))
        x = images.astype(np.float64)
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)

    monkeypatch.setattr(photos, "inception_features", fake_inception)
    labels = np.tile(np.arange(3), 40)
    feats = {
        "train": rng.normal(size=(120, 6)),
        "train_labels": labels,
        "reference": rng.normal(size=(60, 6)) + 3.0,
        "reference_labels": np.tile(np.arange(3), 20),
        "train_b": rng.normal(size=(120, 6)) + 7.0,
        "n": np.array(120),
        "seed": np.array(0),
    }
    np.savez(tmp_path / photos.FEATURES, **feats)
    images = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    samples = tmp_path / "s.npz"
    write_npz(samples, images, np.tile(np.arange(3), 10))

    result = photos.score_samples(tmp_path, samples, n=120)
    f = fake_inception(images)
    assert result["fid"] == pytest.approx(photos.fid(f, feats["reference"]))
    assert result["fid_train"] == pytest.approx(photos.fid(f, feats["train_b"]))
    assert result["fid_train"] != pytest.approx(result["fid"])
    assert result["num_real"] == 30 and result["num_samples"] == 30
    calls.clear()
    assert photos.score_samples(tmp_path, samples, n=120) == result
    assert calls == []  # the samples' features came from the cache beside them
    write_npz(samples, images[::-1], np.tile(np.arange(3), 10))  # a rewritten samples file is scored afresh
    photos.score_samples(tmp_path, samples, n=120)
    assert calls == [30]
