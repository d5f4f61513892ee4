"""Numbers drawn from ``results.json``: seed statistics, curves, the correlation, and the paper's findings.

Pure functions of the results dictionary (no files, no torch), so the report and its tests share them.

* A *variant* is a run without its seed; its numbers are the mean and the spread (sample standard
  deviation, ddof = 1) over its seeds at each evaluated step.
* The three findings of the paper checked at the study's scale:
  1. adaLN-Zero is the best block design (Fig. 5): lowest final FID among the designs compared;
  2. FID falls as Gflops rise (Fig. 8, r = −0.93): Pearson r between log10 Gflops and final FID;
  3. bigger models are more compute-efficient (Fig. 9): at one training compute every size
     reached, FID (interpolated linearly in log compute) falls as Gflops rise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

SIZE_AXES = ("model", "patch_size")


@dataclass(frozen=True)
class Point:
    """One x of a variant's curve: the mean and spread over the seeds evaluated there."""

    x: float
    mean: float
    std: float
    n: int


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation coefficient of two equally long sequences (nan for fewer than 2 points)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson needs equally long sequences, got {a.shape} and {b.shape}")
    if a.size < 2:
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    return float((da * db).sum() / denom) if denom > 0 else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def variants(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by variant, in first-seen order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        out[r["variant"]].append(r)
    return dict(out)


def curve(runs: list[dict], x: str = "step", metric: str = "fid") -> list[Point]:
    """Mean ± spread of ``metric`` over the runs' seeds at every ``x`` (step, images or train_flops)."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for r in runs:
        for e in r["evaluations"]:
            if metric in e and math.isfinite(e[metric]):
                by_x[e[x]].append(e[metric])
    return [Point(float(k), *mean_std(v), n=len(v)) for k, v in sorted(by_x.items())]


def final(runs: list[dict], metric: str = "fid") -> Optional[Point]:
    """The variant's last point that every one of its seeds reached (x = step), or None."""
    common = set.intersection(*(set(e["step"] for e in r["evaluations"]) for r in runs)) if runs else set()
    if not common:
        return None
    last = max(common)
    values = [e[metric] for r in runs for e in r["evaluations"] if e["step"] == last]
    return Point(float(last), *mean_std(values), n=len(values))


def interpolate_log(xs: Sequence[float], ys: Sequence[float], x: float) -> Optional[float]:
    """y at ``x`` on the polyline through (log xs, ys); None outside [min xs, max xs]."""
    if not xs or x < xs[0] * (1 - 1e-9) or x > xs[-1] * (1 + 1e-9):
        return None
    return float(np.interp(math.log(x), np.log(np.asarray(xs, dtype=np.float64)), np.asarray(ys, dtype=np.float64)))


def grid_runs(results: dict, grid: str) -> list[dict]:
    return [r for r in results["runs"] if grid in r["grids"]]


def grid_names(results: dict) -> list[str]:
    names: list[str] = []
    for r in results["runs"]:
        names += [g for g in r["grids"] if g not in names]
    return names


def varying(runs: list[dict], axes: Sequence[str]) -> bool:
    """Whether the runs differ along any of ``axes``."""
    return any(len({r[a] for r in runs}) > 1 for a in axes)


def design_runs(results: dict) -> list[dict]:
    """Runs of the grids that compare block designs."""
    return _runs_of_grids(results, lambda rs: varying(rs, ("block",)))


def size_runs(results: dict) -> list[dict]:
    """Runs of the grids that compare sizes or patch sizes (none when no grid does)."""
    return _runs_of_grids(results, lambda rs: varying(rs, SIZE_AXES))


def _runs_of_grids(results: dict, keep) -> list[dict]:
    """Finished runs of the grids ``keep`` selects (a run stopped mid-way would be compared at another step)."""
    chosen = [g for g in grid_names(results) if keep(grid_runs(results, g))]
    return [r for r in results["runs"] if any(g in chosen for g in r["grids"]) and r.get("done", True)]


def design_ranking(results: dict) -> list[dict]:
    """Block designs by final FID (mean over seeds, lowest first)."""
    rows = []
    for runs in variants(design_runs(results)).values():
        p = final(runs)
        if p is not None:
            r = runs[0]
            rows.append(
                {"block": r["block"], "label": r["label"], "step": p.x, "fid": p.mean, "std": p.std, "seeds": p.n}
            )
    return sorted(rows, key=lambda r: r["fid"])


def size_table(results: dict) -> list[dict]:
    """Per size variant: Gflops, parameters, final FID (mean, spread), in Gflops order."""
    rows = []
    for runs in variants(size_runs(results)).values():
        p = final(runs)
        if p is not None:
            r = runs[0]
            rows.append(
                {
                    "label": r["label"],
                    "gflops": r["gflops"],
                    "params": r["params"],
                    "step": p.x,
                    "fid": p.mean,
                    "std": p.std,
                    "seeds": p.n,
                }
            )
    return sorted(rows, key=lambda r: r["gflops"])


def equal_compute(results: dict) -> Optional[dict]:
    """FID of every size variant at one training compute all of them reached (the smallest final one).

    None when the variants' compute ranges do not overlap (a bigger model's first evaluation came
    after the smallest model's last).
    """
    curves = {}
    for runs in variants(size_runs(results)).values():
        c = curve(runs, x="train_flops")
        if c:
            curves[runs[0]["label"]] = (runs[0]["gflops"], c)
    if len(curves) < 2:
        return None
    lo = max(c[0].x for _, c in curves.values())
    hi = min(c[-1].x for _, c in curves.values())
    if lo > hi:
        return None
    rows = []
    for label, (gflops, c) in curves.items():
        fid = interpolate_log([p.x for p in c], [p.mean for p in c], hi)
        rows.append({"label": label, "gflops": gflops, "fid": fid})
    rows.sort(key=lambda r: r["gflops"])
    r = pearson([math.log10(x["gflops"]) for x in rows], [x["fid"] for x in rows])
    return {"train_flops": hi, "rows": rows, "pearson_log_gflops": r}


def findings(results: dict) -> dict:
    """The paper's three findings, each with its numbers and whether this study reproduces it."""
    out: dict = {}
    ranking = design_ranking(results)
    if len(ranking) > 1:
        out["adaln_zero_best"] = {"ranking": ranking, "reproduced": ranking[0]["block"] == "adaln-zero"}
    sizes = size_table(results)
    if len(sizes) > 1:
        r = pearson([math.log10(s["gflops"]) for s in sizes], [s["fid"] for s in sizes])
        out["fid_falls_with_gflops"] = {"rows": sizes, "pearson_log_gflops": r, "reproduced": bool(r < 0)}
    eq = equal_compute(results)
    if eq is not None:
        fids = [row["fid"] for row in eq["rows"]]
        out["bigger_more_compute_efficient"] = {
            **eq,
            "reproduced": bool(eq["pearson_log_gflops"] < 0 and fids[-1] < fids[0]),
        }
    return out
