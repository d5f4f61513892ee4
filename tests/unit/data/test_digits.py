"""Bundled digits (checked against scikit-learn's copy) → image-folder export.

Pixel values, stratified split, reuse, and the readers that consume it.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dit.data.digits import export_digits, load_digits_uint8, resize_digits, split_indices
from dit.errors import UserError
from dit.evaluation.io import load_images


@pytest.fixture(scope="module")
def sklearn_digits():
    d = load_digits()
    return d.images, d.target


def test_grey_levels_follow_the_closed_form(sklearn_digits):
    images, labels = load_digits_uint8()
    raw, target = sklearn_digits
    assert images.dtype == np.uint8 and images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(labels, target)
    # 16 levels → 0..255: v·255/16 rounded; spot values 0 → 0, 16 → 255, 8 → 128 (127.5 rounds to even)
    np.testing.assert_array_equal(images, np.rint(raw * 255 / 16).astype(np.uint8))
    assert images[raw == 0].max() == 0 and images[raw == 16].min() == 255
    if (raw == 8).any():
        assert set(np.unique(images[raw == 8])) == {128}


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    train, test = split_indices(labels, 0.3, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    for c in range(10):
        assert (labels[test] == c).sum() == round(0.3 * (labels == c).sum())
    again = split_indices(labels, 0.3, seed=0)
    np.testing.assert_array_equal(test, again[1])
    assert not np.array_equal(test, split_indices(labels, 0.3, seed=1)[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(UserError, match="held-out-fraction"):
        split_indices(np.arange(20) % 10, fraction, 0)


def test_export_at_8px_keeps_the_original_pixels_in_class_folders(tmp_path, sklearn_digits):
    raw, target = sklearn_digits
    export = export_digits(tmp_path / "digits", image_size=8, held_out_fraction=0.25, seed=3)
    train, test = load_images(export.train_dir), load_images(export.test_dir)  # the evaluation reader
    assert (export.num_train, export.num_test) == (len(train.images), len(test.images))
    assert export.num_train + export.num_test == 1797
    want_train, want_test = split_indices(target, 0.25, 3)
    expected = np.rint(raw * 255 / 16).astype(np.uint8)
    # load_images orders by class folder then file name (= original index): compare image by image
    for got, idx in ((train, want_train), (test, want_test)):
        order = np.concatenate([idx[target[idx] == c] for c in range(10)])
        np.testing.assert_array_equal(got.labels, target[order])
        np.testing.assert_array_equal(got.images[..., 0], expected[order])  # grey → RGB, all channels equal
        np.testing.assert_array_equal(got.images[..., 0], got.images[..., 2])


def test_export_at_16px_is_what_training_reads(tmp_path):
    from dit.data.image_folder import ImageFolder

    export = export_digits(tmp_path / "d16", image_size=16, held_out_fraction=0.3, seed=0)
    ds = ImageFolder(export.train_dir, image_size=16)
    x, y = ds[0]
    assert tuple(x.shape) == (3, 16, 16) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert len(ds) == export.num_train and ds.num_classes == 10
    # The upsampled digit averaged back over 2×2 blocks is close to the 8×8 original (same geometry, no shift).
    small, _ = load_digits_uint8()
    big = resize_digits(small[:50], 16).astype(np.float64)  # (50, 16, 16)
    pooled = big.reshape(50, 8, 2, 8, 2).mean(axis=(2, 4))
    assert np.abs(pooled - small[:50]).mean() < 12.0  # bicubic smooths edges; a shifted image errs by ~60


def test_export_is_reused_with_the_same_settings_and_refused_with_others(tmp_path):
    root = tmp_path / "digits"
    export_digits(root, image_size=8, held_out_fraction=0.3, seed=0)
    marker = sorted((root / "train" / "0").iterdir())[0]
    mtime = marker.stat().st_mtime_ns
    export_digits(root, image_size=8, held_out_fraction=0.3, seed=0)
    assert marker.stat().st_mtime_ns == mtime  # not rewritten
    with pytest.raises(UserError, match="other settings"):
        export_digits(root, image_size=16, held_out_fraction=0.3, seed=0)
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="not a digits export"):
        export_digits(tmp_path / "other", image_size=8)


def test_bundled_digits_load_without_scikit_learn(tmp_path):
    """The demo's data comes from the package itself: scikit-learn is a test reference only."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"  # any `import sklearn` now raises ImportError
        "from dit.data.digits import load_digits_uint8\n"
        "images, labels = load_digits_uint8(); print(images.shape, labels.shape, int(labels.sum()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(1797,", "8,", "8)", "(1797,)", str(int(load_digits()["target"].sum()))]
