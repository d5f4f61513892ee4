"""PIL plots of `dit demo`: coordinate mapping, where the loss curve's pixels land, strip layout, CSV reading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dit.demo.plots import (
    COLOURS,
    MARGIN,
    axis_map,
    enlarge,
    loss_curve_image,
    read_metrics_csv,
    strip_image,
)
from dit.errors import UserError


def test_axis_map_linear_and_log_closed_form():
    np.testing.assert_allclose(axis_map(np.array([2.0, 4.0, 6.0]), 2, 6, 100, 0), [100, 50, 0])
    # log axis: the geometric mean lands half way
    np.testing.assert_allclose(axis_map(np.array([0.01, 0.1, 1.0]), 0.01, 1.0, 0, 200, log=True), [0, 100, 200])


def _curve_pixels(img: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero((img == np.array(colour, dtype=np.uint8)).all(axis=-1))
    return xs, ys


def test_loss_curve_pixels_lie_on_the_mapped_curve():
    width, height = 400, 300
    steps = np.arange(0, 101, 5, dtype=float)
    loss = 10 ** (-steps / 50)  # log-linear: a straight line on the log axis, 1 → 0.01
    img = loss_curve_image(steps, {"loss": loss}, width=width, height=height, log_y=True)
    assert img.shape == (height, width, 3) and img.dtype == np.uint8
    xs, ys = _curve_pixels(img, COLOURS[0])
    inside = (xs > MARGIN["left"] + 2) & (xs < width - MARGIN["right"] - 100)  # left of the legend
    xs, ys = xs[inside], ys[inside]
    assert len(xs) > 100
    # The data range is padded by ×1.1 on the log axis; recompute the expected row of every column.
    left, right, top, bottom = MARGIN["left"], width - MARGIN["right"], MARGIN["top"], height - MARGIN["bottom"]
    step_at = (xs - left) / (right - left) * 100
    expected = axis_map(10 ** (-step_at / 50), 0.01 / 1.1, 1.0 * 1.1, bottom, top, log=True)
    assert np.abs(ys - expected).max() <= 2.5


def test_loss_curve_falls_back_to_linear_and_skips_non_finite():
    img = loss_curve_image([0, 1, 2, 3], {"a": [1.0, -1.0, math.nan, 0.5], "b": [0.2, 0.1, 0.3, 0.0]}, log_y=True)
    assert _curve_pixels(img, COLOURS[0])[0].size and _curve_pixels(img, COLOURS[1])[0].size
    with pytest.raises(ValueError):
        loss_curve_image([0, 1], {"a": [math.nan, math.inf]})
    with pytest.raises(ValueError):
        loss_curve_image([0, 1], {"a": [1.0]})


def test_strip_layout_and_enlarged_frames():
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8) for _ in range(2)]  # 2 rows of 5 frames, 6×7 px
    out = strip_image(rows, scale=3, padding=1)
    assert out.shape == ((2 * (6 + 1) + 1) * 3, (5 * (7 + 1) + 1) * 3, 3)
    r, f = 1, 4  # frame 4 of row 1 sits at (1 + r·7, 1 + f·8) before enlarging
    top, left = (1 + r * 7) * 3, (1 + f * 8) * 3
    np.testing.assert_array_equal(out[top : top + 18, left : left + 21], enlarge(rows[r][f], 3))
    assert (out[0] == 255).all()  # white padding
    with pytest.raises(ValueError):
        strip_image([rows[0], rows[1][:3]])


def test_read_metrics_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,mse\n10,0.5,0.4\n20,0.25,\n")
    m = read_metrics_csv(path)
    np.testing.assert_array_equal(m["step"], [10, 20])
    assert m["loss"][1] == 0.25 and math.isnan(m["mse"][1])
    (tmp_path / "empty.csv").write_text("step,loss\n")
    with pytest.raises(UserError, match="no logged steps"):
        read_metrics_csv(tmp_path / "empty.csv")
    with pytest.raises(UserError, match="cannot read"):
        read_metrics_csv(tmp_path / "missing.csv")
