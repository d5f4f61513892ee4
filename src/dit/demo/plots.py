"""Pictures of a demo run drawn with PIL alone (no matplotlib): a loss curve and a denoising strip.

* :func:`loss_curve_image` draws training curves (step on x, loss on a log or linear y axis)
  with axes, tick labels and a legend (the frame and ticks are :mod:`dit.study.axes`', shared with
  the study's charts).
* :func:`strip_image` tiles frames of one sample being denoised (rows of equal length) and
  enlarges them by pixel repetition so a 16-pixel digit is visible.
* :func:`read_metrics_csv` reads the ``metrics.csv`` that ``dit train`` logs.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Mapping, Sequence, Union

import numpy as np

from dit.errors import UserError
from dit.sampling.writers import make_grid
from dit.study.axes import AXIS, BACKGROUND, MARGIN, Frame, axis_map

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (empty cells → NaN)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UserError(f"cannot read training metrics {path}: {e}") from None
    if not rows:
        raise UserError(f"{path} has no logged steps; train longer than --log-every steps")
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows]) for k in rows[0]}


def loss_curve_image(
    steps: Union[Sequence[float], np.ndarray],
    series: Mapping[str, Union[Sequence[float], np.ndarray]],
    width: int = 640,
    height: int = 360,
    log_y: bool = True,
    title: str = "training loss",
    x_label: str = "step",
) -> np.ndarray:
    """uint8 (height, width, 3): each series of ``series`` against ``steps``, with axes and a legend.

    Non-finite values are left out. ``log_y`` falls back to a linear axis if a value is <= 0.
    """
    from PIL import Image, ImageDraw, ImageFont

    x = np.asarray(steps, dtype=np.float64)
    ys = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()}
    if not ys or len(x) == 0 or any(len(v) != len(x) for v in ys.values()):
        raise ValueError("loss_curve_image needs at least one series with one value per step")
    finite = np.concatenate([v[np.isfinite(v)] for v in ys.values()])
    if finite.size == 0:
        raise ValueError("no finite values to plot")
    log_y = log_y and bool((finite > 0).all())
    y_lo, y_hi = float(finite.min()), float(finite.max())
    if log_y:
        y_lo, y_hi = y_lo / 1.1, y_hi * 1.1
    else:
        pad = 0.05 * (y_hi - y_lo) or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1
    box = (MARGIN["left"], MARGIN["top"], width - MARGIN["right"], height - MARGIN["bottom"])
    frame = Frame(*box, x_range=(x_lo, x_hi), y_range=(y_lo, y_hi), log_y=log_y)
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    frame.draw_axes(draw, font, x_grid=False)
    centre = (frame.left + frame.right) / 2
    draw.text((centre, height - 4), x_label, fill=AXIS, font=font, anchor="mb")
    draw.text((centre, 4), title + (" (log scale)" if log_y else ""), fill=AXIS, font=font, anchor="mt")
    for i, (name, y) in enumerate(ys.items()):
        _draw_series(draw, font, frame, i, name, x, y)
    return np.asarray(img)


def _draw_series(draw, font, frame: Frame, i: int, name: str, x: np.ndarray, y: np.ndarray) -> None:
    """Series ``i``: its finite points joined by a line (one point: a dot), and its legend entry."""
    colour = COLOURS[i % len(COLOURS)]
    ok = np.isfinite(y)
    x_px = axis_map(x, *frame.x_range, frame.left, frame.right)  # (S,)
    y_px = axis_map(np.where(ok, y, 1.0), *frame.y_range, frame.bottom, frame.top, frame.log_y)  # (S,)
    points = [(float(a), float(b)) for a, b, keep in zip(x_px, y_px, ok) if keep]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    elif points:
        draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
    ly, right = frame.top + 8 + 14 * i, frame.right
    draw.line([(right - 90, ly), (right - 70, ly)], fill=colour, width=2)
    draw.text((right - 64, ly), name, fill=AXIS, font=font, anchor="lm")


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (H, W, 3) → (H·scale, W·scale, 3) by repeating pixels (keeps them crisp)."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def strip_image(rows: Sequence[np.ndarray], scale: int = 4, padding: int = 1) -> np.ndarray:
    """Rows of frames, each uint8 (F, H, W, 3) with the same F, tiled and enlarged ``scale`` times.

    The result is (R·(H+p)+p, F·(W+p)+p, 3) before enlarging, with p = ``padding``.
    """
    frames = np.concatenate(list(rows))  # (R·F, H, W, 3)
    columns = len(rows[0])
    if any(len(r) != columns for r in rows):
        raise ValueError("every row of a strip needs the same number of frames")
    return enlarge(make_grid(frames, columns, padding=padding, pad_value=255), scale)
