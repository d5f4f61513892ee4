"""The study's charts, drawn with PIL alone (no matplotlib), in the paper's style.

:func:`chart` draws series of (x, mean, spread) points as lines with markers and vertical error
bars (the seed spread), on log or linear axes, with a legend; the frame, ticks and coordinate map are
:mod:`dit.study.axes`'. :func:`study_charts` turns results into the paper's figures:

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

from dit.sampling.writers import write_png
from dit.study import analysis
from dit.study.axes import AXIS, BACKGROUND, MARGIN, Frame

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
    box = (MARGIN["left"] + 8, MARGIN["top"] + 8, width - 180, height - MARGIN["bottom"] - 6)  # legend: right
    frame = Frame(*box, x_range=(x_lo, x_hi), y_range=(y_lo, y_hi), log_x=log_x, log_y=log_y)
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    frame.draw_axes(draw, font, x_grid=True)
    x_text = x_label + (" (log)" if log_x else "")
    draw.text(((frame.left + frame.right) / 2, height - 4), x_text, fill=AXIS, font=font, anchor="mb")
    draw.text((6, frame.top - 14), y_label + (" (log)" if log_y else ""), fill=AXIS, font=font, anchor="ls")
    draw.text((width / 2, 6), title, fill=AXIS, font=font, anchor="mt")
    for i, (s, ps) in enumerate(pts):
        _draw_series(draw, font, frame, i, s, ps)
    return np.asarray(img)


def _draw_series(draw, font, frame: Frame, i: int, s: Series, ps: list[tuple[float, float, float]]) -> None:
    """Series ``i``'s points (x, y, err) as markers with error bars, joined if ``s.line``; its legend entry."""
    colour = PALETTE[i % len(PALETTE)]
    xy = [frame.px(x, y) for x, y, _ in ps]
    if s.line and len(xy) > 1:
        draw.line(xy, fill=colour, width=2)
    y_lo = frame.y_range[0]
    for (x, y, e), (px, py) in zip(ps, xy):
        if math.isfinite(e) and e > 0:
            (_, p_lo), (_, p_hi) = frame.px(x, max(y - e, y_lo) if frame.log_y else y - e), frame.px(x, y + e)
            draw.line([(px, p_lo), (px, p_hi)], fill=colour, width=1)
            draw.line([(px - 3, p_lo), (px + 3, p_lo)], fill=colour)
            draw.line([(px - 3, p_hi), (px + 3, p_hi)], fill=colour)
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    ly, right = frame.top + 8 + 14 * i, frame.right
    draw.line([(right + 10, ly), (right + 28, ly)], fill=colour, width=2)
    draw.ellipse([right + 16, ly - 3, right + 22, ly + 3], fill=colour)
    draw.text((right + 34, ly), s.name, fill=AXIS, font=font, anchor="lm")


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
