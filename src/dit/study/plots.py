"""The study's charts, drawn with PIL alone (no matplotlib), in the paper's style.

:func:`chart` draws series of (x, mean, spread) points as lines with markers and vertical error
bars (the seed spread), on log or linear axes, with a legend; the tick and coordinate helpers are
:mod:`dit.demo.plots`'. :func:`study_charts` turns results into the paper's figures:

* ``fid_vs_steps_<grid>.png``: FID against training steps, one line per variant of each sub-grid
  (Figs. 5 and 6: per block design, per size);
* ``fid_vs_gflops.png``: final FID against transformer Gflops, with Pearson's r (Fig. 8);
* ``fid_vs_training_compute.png``: FID against training FLOPs, one line per size (Fig. 9);
* ``fid_vs_sampling_compute.png``: final FID against sampling FLOPs per image (Fig. 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dit.demo.plots import AXIS, BACKGROUND, GRID, MARGIN, _label, _log_ticks, _nice_ticks, axis_map
from dit.sampling.writers import write_png
from dit.study import analysis

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line (or point set) of a chart; ``err`` is the half-length of each error bar."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    err: Sequence[float]
    line: bool = True


def _range(values: np.ndarray, log: bool) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if log:
        return (lo / 1.25, hi * 1.25) if hi > lo else (lo / 2, hi * 2)
    pad = 0.08 * (hi - lo) or max(abs(lo) * 0.1, 1.0)
    return lo - pad, hi + pad


def chart(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str = "FID",
    log_x: bool = False,
    log_y: bool = True,
    width: int = 720,
    height: int = 420,
) -> np.ndarray:
    """uint8 (height, width, 3): every series as markers (joined if ``line``) with error bars and a legend.

    Non-finite points are left out; a log axis falls back to linear when a value is <= 0.
    """
    from PIL import Image, ImageDraw, ImageFont

    pts = [
        (s, [(x, y, e) for x, y, e in zip(s.x, s.y, s.err) if math.isfinite(x) and math.isfinite(y)]) for s in series
    ]
    xs = np.array([p[0] for _, ps in pts for p in ps], dtype=np.float64)
    lows = np.array([p[1] - (p[2] if math.isfinite(p[2]) else 0) for _, ps in pts for p in ps], dtype=np.float64)
    highs = np.array([p[1] + (p[2] if math.isfinite(p[2]) else 0) for _, ps in pts for p in ps], dtype=np.float64)
    if xs.size == 0:
        raise ValueError("chart needs at least one finite point")
    log_x = log_x and bool((xs > 0).all())
    ys = np.concatenate([lows, highs])
    log_y = log_y and bool((ys > 0).all())
    x_lo, x_hi = _range(xs, log_x)
    y_lo, y_hi = _range(ys, log_y)
    left, right = MARGIN["left"] + 8, width - 180  # room for the legend on the right
    top, bottom = MARGIN["top"] + 8, height - MARGIN["bottom"] - 6

    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for t in _log_ticks(y_lo, y_hi) if log_y else _nice_ticks(y_lo, y_hi):
        py = float(axis_map(np.array([t]), y_lo, y_hi, bottom, top, log_y)[0])
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((left - 6, py), _label(t), fill=AXIS, font=font, anchor="rm")
    for t in _log_ticks(x_lo, x_hi) if log_x else _nice_ticks(x_lo, x_hi):
        px = float(axis_map(np.array([t]), x_lo, x_hi, left, right, log_x)[0])
        draw.line([(px, top), (px, bottom)], fill=GRID)
        draw.text((px, bottom + 6), _label(t), fill=AXIS, font=font, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=AXIS)
    x_text = x_label + (" (log)" if log_x else "")
    draw.text(((left + right) / 2, height - 4), x_text, fill=AXIS, font=font, anchor="mb")
    draw.text((6, top - 14), y_label + (" (log)" if log_y else ""), fill=AXIS, font=font, anchor="ls")
    draw.text((width / 2, 6), title, fill=AXIS, font=font, anchor="mt")

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = float(axis_map(np.array([x]), x_lo, x_hi, left, right, log_x)[0])
        py = float(axis_map(np.array([y]), y_lo, y_hi, bottom, top, log_y)[0])
        return px, py

    for i, (s, ps) in enumerate(pts):
        colour = PALETTE[i % len(PALETTE)]
        xy = [to_px(x, y) for x, y, _ in ps]
        if s.line and len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for (x, y, e), (px, py) in zip(ps, xy):
            if math.isfinite(e) and e > 0:
                (_, p_lo), (_, p_hi) = to_px(x, max(y - e, y_lo) if log_y else y - e), to_px(x, y + e)
                draw.line([(px, p_lo), (px, p_hi)], fill=colour, width=1)
                draw.line([(px - 3, p_lo), (px + 3, p_lo)], fill=colour)
                draw.line([(px - 3, p_hi), (px + 3, p_hi)], fill=colour)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        ly = top + 8 + 14 * i
        draw.line([(right + 10, ly), (right + 28, ly)], fill=colour, width=2)
        draw.ellipse([right + 16, ly - 3, right + 22, ly + 3], fill=colour)
        draw.text((right + 34, ly), s.name, fill=AXIS, font=font, anchor="lm")
    return np.asarray(img)


def _curve_series(runs_by_variant: dict[str, list[dict]], x: str, scale: float = 1.0) -> list[Series]:
    out = []
    for runs in runs_by_variant.values():
        c = analysis.curve(runs, x=x)
        if c:
            out.append(Series(runs[0]["label"], [p.x * scale for p in c], [p.mean for p in c], [p.std for p in c]))
    return out


def _final_series(runs_by_variant: dict[str, list[dict]], x_key: str, scale: float = 1.0) -> list[Series]:
    out = []
    for runs in runs_by_variant.values():
        p = analysis.final(runs)
        if p is not None:
            out.append(Series(runs[0]["label"], [runs[0][x_key] * scale], [p.mean], [p.std], line=False))
    return out


def study_charts(results: dict, folder: Path) -> list[Path]:
    """Write every chart of the report into ``folder``; returns their paths."""
    written = []

    def save(name: str, image: np.ndarray) -> None:
        path = folder / name
        write_png(path, image)
        written.append(path)

    seeds = "mean ± std over seeds"
    for g in analysis.grid_names(results):
        series = _curve_series(analysis.variants(analysis.grid_runs(results, g)), "step")
        if series:
            save(f"fid_vs_steps_{g}.png", chart(series, f"{g}: FID vs training steps ({seeds})", "training steps"))
    sizes = analysis.variants(analysis.size_runs(results))
    f = analysis.findings(results).get("fid_falls_with_gflops")
    if f is not None:
        title = f"final FID vs transformer Gflops (Pearson r = {f['pearson_log_gflops']:.2f} on log10 Gflops)"
        save("fid_vs_gflops.png", chart(_final_series(sizes, "gflops"), title, "transformer Gflops", log_x=True))
    series = _curve_series(sizes, "train_flops", 1e-12)
    if series:
        save(
            "fid_vs_training_compute.png",
            chart(series, f"FID vs training compute ({seeds})", "training TFLOPs", log_x=True),
        )
    series = _final_series(analysis.variants(results["runs"]), "sampling_flops_per_image", 1e-9)
    if series:
        save(
            "fid_vs_sampling_compute.png",
            chart(series, "final FID vs sampling compute", "sampling GFLOPs per image", log_x=True),
        )
    return written
