"""Jittered digit renderings (dit.data.digit_styles) and their export: shapes, seeding, pose, colour, no leakage."""

from __future__ import annotations

import numpy as np
import pytest

from dit.data import digit_styles
from dit.data.digit_styles import render_digits
from dit.data.digits import export_digits, load_digits_uint8, split_indices
from dit.errors import UserError
from dit.evaluation.io import load_images


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_uint8()
    return images[:40], labels[:40]


def test_shapes_order_and_seeding(digits):
    images, _ = digits
    grey = render_digits(images, 32, copies=3, seed=5)
    assert grey.shape == (120, 32, 32) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey, render_digits(images, 32, copies=3, seed=5))  # same seed, same bits
    assert not np.array_equal(grey, render_digits(images, 32, copies=3, seed=6))
    assert np.abs(grey[0].astype(int) - grey[1].astype(int)).mean() > 5  # copies of one digit differ
    rgb = render_digits(images, 28, copies=2, rgb=True, seed=0)
    assert rgb.shape == (80, 28, 28, 3)
    with pytest.raises(ValueError, match="copies"):
        render_digits(images, 32, copies=0)


def test_without_jitter_the_copy_is_the_centred_thresholded_digit(digits, monkeypatch):
    """With pose and noise switched off, the rendering is the upsampled digit in the centre of the canvas:
    its 8×8 block average (over the glyph box) matches the original digit's ink layout."""
    for name, value in (
        ("MAX_ROTATION_DEG", 0.0),
        ("SCALE_RANGE", (1.0, 1.0)),
        ("MAX_SHEAR", 0.0),
        ("MAX_SHIFT_FRACTION", 0.0),
        ("NOISE_STD", 0.0),
        ("GLYPH_FRACTION", 0.75),
    ):
        monkeypatch.setattr(digit_styles, name, value)
    images, _ = digits
    out = render_digits(images, 32, copies=1).astype(np.float64) / 255  # (N, 32, 32), glyph box 24 at offset 4
    assert out[:, :4].max() < 0.02 and out[:, -4:].max() < 0.02  # nothing outside the box
    pooled = out[:, 4:28, 4:28].reshape(-1, 8, 3, 8, 3).mean(axis=(2, 4))  # (N, 8, 8)
    orig = images.astype(np.float64) / 255
    corr = [np.corrcoef(p.ravel(), o.ravel())[0, 1] for p, o in zip(pooled, orig)]
    assert min(corr) > 0.8


def test_pose_keeps_the_digit_near_the_centre(digits):
    images, _ = digits
    out = render_digits(images, 32, copies=4, seed=1).astype(np.float64)
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    mass = out.sum(axis=(1, 2))
    cy, cx = (out * ys).sum(axis=(1, 2)) / mass, (out * xs).sum(axis=(1, 2)) / mass
    assert np.all(np.abs(cy - 16) < 8) and np.all(np.abs(cx - 16) < 8)
    assert np.std(cx) > 0.5  # but it moves


def test_rgb_ink_and_background_are_readable(digits):
    images, _ = digits
    rgb = render_digits(images, 32, copies=2, rgb=True, seed=2).astype(np.float64) / 255
    luma = rgb @ np.array(digit_styles.LUMA)  # (M, 32, 32)
    corner = luma[:, :3, :3].mean(axis=(1, 2))  # background
    ink_contrast = np.abs(luma - corner[:, None, None]).max(axis=(1, 2))  # the ink, farthest from the background
    assert np.all(ink_contrast > digit_styles.MIN_CONTRAST - 0.05)
    colours = rgb[:, 0, 0]
    assert np.std(colours, axis=0).min() > 0.1  # backgrounds vary


def test_export_splits_originals_so_no_held_out_digit_has_a_training_copy(tmp_path):
    _, labels = load_digits_uint8()
    export = export_digits(tmp_path / "j", image_size=16, held_out_fraction=0.3, seed=0, style="jitter-rgb", copies=2)
    assert (export.style, export.copies) == ("jitter-rgb", 2)
    train, test = split_indices(labels, 0.3, 0)
    names = lambda split: {p.stem.split("-")[0] for p in (tmp_path / "j" / split).rglob("*.png")}
    assert names("train") == {f"{i:04d}" for i in train} and names("test") == {f"{i:04d}" for i in test}
    got = load_images(export.test_dir)
    assert len(got.images) == export.num_test == 2 * len(test) and got.images.shape[1:] == (16, 16, 3)
    assert not np.array_equal(got.images[..., 0], got.images[..., 1])  # really colour
    export_digits(tmp_path / "j", image_size=16, held_out_fraction=0.3, seed=0, style="jitter-rgb", copies=2)  # reused
    with pytest.raises(UserError, match="other settings"):
        export_digits(tmp_path / "j", image_size=16, held_out_fraction=0.3, seed=0, style="jitter", copies=2)
    with pytest.raises(UserError, match="style"):
        export_digits(tmp_path / "k", style="wobbly")
    with pytest.raises(UserError, match="copies"):
        export_digits(tmp_path / "k", copies=3)


def test_flat_style_is_the_jittered_strokes_on_a_background_of_exact_zeros(digits, monkeypatch, tmp_path):
    """Flat digits: the same strokes and pose as the jittered style (same seed), no pixel noise, and
    every pixel under FLAT_FLOOR exactly 0 — so most of the image is exactly 0, as thresholded scans."""
    images, labels = digits
    flat = render_digits(images, 32, copies=2, seed=3, flat=True)
    assert flat.shape == (80, 32, 32) and flat.dtype == np.uint8
    zero = flat == 0
    assert zero.mean() > 0.6  # a flat background
    floor = int(np.floor(digit_styles.FLAT_FLOOR * 255))
    assert flat[~zero].min() >= floor  # nothing faint survives: background or ink, nothing between
    monkeypatch.setattr(digit_styles, "NOISE_STD", 0.0)
    clean = render_digits(images, 32, copies=2, seed=3)  # the jittered style without its noise
    level = digit_styles.FLAT_FLOOR * 255
    expected = np.where(clean < level, 0, clean)
    away = np.abs(clean - level) > 1  # a pixel that rounds onto the floor may fall either side of it
    np.testing.assert_array_equal(flat[away], expected[away])  # same strokes, same pose
    with pytest.raises(ValueError, match="grayscale"):
        render_digits(images, 32, rgb=True, flat=True)
    monkeypatch.undo()
    export = export_digits(tmp_path / "f", image_size=32, held_out_fraction=0.3, seed=0, style="flat", copies=2)
    assert (export.style, export.copies) == ("flat", 2)
    written = load_images(export.train_dir).images
    assert (written == 0).mean() > 0.6
