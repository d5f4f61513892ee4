"""Pictures of a demo run drawn with PIL alone (no matplotlib): a loss curve and a denoising strip.

* :func:`loss_curve_image` draws training curves (step on x, loss on a log or linear y axis)
  with axes, tick labels and a legend; :func:`axis_map` is its pure coordinate mapping.
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

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))
BACKGROUND = (255, 255, 255)
AXIS = (0, 0, 0)
GRID = (225, 225, 225)
MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 40}


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


def axis_map(
    values: np.ndarray, lo: float, hi: float, pixel_lo: float, pixel_hi: float, log: bool = False
) -> np.ndarray:
    """Data values → pixel coordinates: ``lo`` ↦ ``pixel_lo``, ``hi`` ↦ ``pixel_hi`` (log10 scale if ``log``)."""
    v = np.asarray(values, dtype=np.float64)
    if log:
        v, lo, hi = np.log10(v), math.log10(lo), math.log10(hi)
    span = hi - lo if hi != lo else 1.0
    return pixel_lo + (v - lo) / span * (pixel_hi - pixel_lo)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks (1, 2, 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × 10^k inside [lo, hi] (fewer when the range spans many decades)."""
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) < 3:  # a narrow range: round linear ticks read better
        return _nice_ticks(lo, hi)
    return inside if len(inside) <= 8 else [t for t in inside if f"{t:.0e}".startswith("1")]


def _label(v: float) -> str:
    return f"{v:g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.0e}"


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
    left, right = MARGIN["left"], width - MARGIN["right"]
    top, bottom = MARGIN["top"], height - MARGIN["bottom"]

    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for t in _log_ticks(y_lo, y_hi) if log_y else _nice_ticks(y_lo, y_hi):
        py = float(axis_map(np.array([t]), y_lo, y_hi, bottom, top, log_y)[0])
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((left - 6, py), _label(t), fill=AXIS, font=font, anchor="rm")
    for t in _nice_ticks(x_lo, x_hi):
        px = float(axis_map(np.array([t]), x_lo, x_hi, left, right)[0])
        draw.line([(px, bottom), (px, bottom + 4)], fill=AXIS)
        draw.text((px, bottom + 6), _label(t), fill=AXIS, font=font, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=AXIS)
    draw.text(((left + right) / 2, height - 4), x_label, fill=AXIS, font=font, anchor="mb")
    draw.text(((left + right) / 2, 4), title + (" (log scale)" if log_y else ""), fill=AXIS, font=font, anchor="mt")
    x_px = axis_map(x, x_lo, x_hi, left, right)  # (S,)
    for i, (name, y) in enumerate(ys.items()):
        colour = COLOURS[i % len(COLOURS)]
        ok = np.isfinite(y)
        y_px = axis_map(np.where(ok, y, 1.0), y_lo, y_hi, bottom, top, log_y)  # (S,)
        points = [(float(a), float(b)) for a, b, keep in zip(x_px, y_px, ok) if keep]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        elif points:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        ly = top + 8 + 14 * i
        draw.line([(right - 90, ly), (right - 70, ly)], fill=colour, width=2)
        draw.text((right - 64, ly), name, fill=AXIS, font=font, anchor="lm")
    return np.asarray(img)


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
