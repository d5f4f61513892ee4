"""Chart primitives drawn with PIL alone (no matplotlib): colours, ticks, the data-to-pixel map and
the plot frame that the study's charts and the demo's loss curve share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKGROUND = (255, 255, 255)
AXIS = (0, 0, 0)
GRID = (225, 225, 225)
MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 40}


def axis_map(
    values: np.ndarray, lo: float, hi: float, pixel_lo: float, pixel_hi: float, log: bool = False
) -> np.ndarray:
    """Data values → pixel coordinates: ``lo`` ↦ ``pixel_lo``, ``hi`` ↦ ``pixel_hi`` (log10 scale if ``log``)."""
    v = np.asarray(values, dtype=np.float64)
    if log:
        v, lo, hi = np.log10(v), math.log10(lo), math.log10(hi)
    span = hi - lo if hi != lo else 1.0
    return pixel_lo + (v - lo) / span * (pixel_hi - pixel_lo)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks (1, 2, 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × 10^k inside [lo, hi] (fewer when the range spans many decades)."""
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) < 3:  # a narrow range: round linear ticks read better
        return nice_ticks(lo, hi)
    return inside if len(inside) <= 8 else [t for t in inside if f"{t:.0e}".startswith("1")]


def tick_label(v: float) -> str:
    return f"{v:g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.0e}"


@dataclass(frozen=True)
class Frame:
    """The plot area in pixels and the data ranges it shows."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool = False
    log_y: bool = False

    def px(self, x: float, y: float) -> tuple[float, float]:
        """One data point → its pixel."""
        px = float(axis_map(np.array([x]), *self.x_range, self.left, self.right, self.log_x)[0])
        py = float(axis_map(np.array([y]), *self.y_range, self.bottom, self.top, self.log_y)[0])
        return px, py

    def draw_axes(self, draw: Any, font: Any, x_grid: bool) -> None:
        """Grid lines and labelled ticks on y (and on x: grid lines if ``x_grid``, else tick marks), the box."""
        y_lo, y_hi = self.y_range
        for t in log_ticks(y_lo, y_hi) if self.log_y else nice_ticks(y_lo, y_hi):
            _, py = self.px(self.x_range[0], t)
            draw.line([(self.left, py), (self.right, py)], fill=GRID)
            draw.text((self.left - 6, py), tick_label(t), fill=AXIS, font=font, anchor="rm")
        x_lo, x_hi = self.x_range
        for t in log_ticks(x_lo, x_hi) if self.log_x else nice_ticks(x_lo, x_hi):
            px, _ = self.px(t, y_lo)
            top = self.top if x_grid else self.bottom
            draw.line([(px, top), (px, self.bottom + (0 if x_grid else 4))], fill=GRID if x_grid else AXIS)
            draw.text((px, self.bottom + 6), tick_label(t), fill=AXIS, font=font, anchor="mt")
        draw.rectangle([self.left, self.top, self.right, self.bottom], outline=AXIS)
