"""``report.md`` and the charts, from ``results.json`` alone (``dit study --plot`` redraws them).

The report states the setting (data, budget, evaluation), one table row per variant (sizes, costs,
final FID and class agreement as mean ± spread over seeds), every evaluation, and for each of the
paper's findings whether this study reproduces it, with its numbers (:mod:`dit.study.analysis`).
"""

from __future__ import annotations

import math
from pathlib import Path

from dit.study import analysis
from dit.study.plots import study_charts

PAPER = {
    "adaln_zero_best": "adaLN-Zero is the best block design (paper Fig. 5)",
    "fid_falls_with_gflops": "FID falls as transformer Gflops rise (paper Fig. 8: r = -0.93)",
    "bigger_more_compute_efficient": "bigger models are more compute-efficient (paper Fig. 9)",
}


def _pm(mean: float, std: float, fmt: str = ".2f", n: int = 2) -> str:
    """``mean ± std``; a single seed has no spread: ``mean (1 seed)``."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:{fmt}} ± {std:{fmt}}" if n > 1 else f"{mean:{fmt}} (1 seed)"


def _setting(results: dict) -> list[str]:
    s = results["spec"]
    real = results.get("real_vs_real") or {}
    lines = [
        f"# Study `{s['name']}`",
        "",
        f"- data: {s['data']} at {s['image_size']} px; budget: {results['budget']} per run, batch {s['batch_size']}",
        f"- evaluation: {s['num_samples']} guided samples per checkpoint, {s['sampling_steps']} sampler steps, "
        f"guidance {s['cfg_scale']}, FID in {'the study classifier' if s['data'] == 'digits' else s['features']}'s "
        "features",
    ]
    if real:
        acc = real.get("class_accuracy", math.nan)
        lines.append(f"- real vs real (the floor): FID {real['fid']:.2f}, class agreement {acc:.1%}")
    lines.append(f"- runs: {len(results['runs'])} ({sum(r['done'] for r in results['runs'])} finished)")
    return lines


def _variant_table(results: dict) -> list[str]:
    lines = [
        "| variant | grids | params | Gflops | train TFLOPs | sampling GFLOPs/img | seeds | step | FID "
        "| class agreement (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in analysis.variants(results["runs"]).values():
        r = dict(runs[0])
        finished = [x for x in runs if x.get("done", True)]
        if len(finished) < len(runs):
            r["label"] += f" ({len(finished)} of {len(runs)} seeds finished)"
        p = analysis.final(finished) if finished else None
        acc = analysis.final(finished, "class_accuracy") if finished else None
        if p is None:
            lines.append(
                f"| {r['label']} | {', '.join(r['grids'])} | {r['params']:,} | {r['gflops']:.4f} | | | 0 | | | |"
            )
            continue
        tflops = p.x * r["train_flops_per_step"] / 1e12
        lines.append(
            f"| {r['label']} | {', '.join(r['grids'])} | {r['params']:,} | {r['gflops']:.4f} | {tflops:.3g} | "
            f"{r['sampling_flops_per_image'] / 1e9:.3g} | {p.n} | {int(p.x)} | {_pm(p.mean, p.std, n=p.n)} | "
            f"{_pm(100 * acc.mean, 100 * acc.std, '.1f', n=acc.n) if acc else 'n/a'} |"
        )
    return lines


def _findings(results: dict) -> list[str]:
    f = analysis.findings(results)
    lines = ["## The paper's findings at this scale", ""]
    if not f:
        return lines + ["Not enough finished runs to compare."]
    if "adaln_zero_best" in f:
        d = f["adaln_zero_best"]
        order = ", ".join(f"{r['block']} {_pm(r['fid'], r['std'], n=r['seeds'])}" for r in d["ranking"])
        lines.append(f"- {PAPER['adaln_zero_best']}: **{'reproduced' if d['reproduced'] else 'not reproduced'}**. ")
        lines.append(f"  Final FID, best first: {order}.")
    if "fid_falls_with_gflops" in f:
        d = f["fid_falls_with_gflops"]
        rows = ", ".join(
            f"{r['label']} ({r['gflops']:.4f} Gflops) {_pm(r['fid'], r['std'], n=r['seeds'])}" for r in d["rows"]
        )
        lines.append(
            f"- {PAPER['fid_falls_with_gflops']}: **{'reproduced' if d['reproduced'] else 'not reproduced'}**."
        )
        r = d["pearson_log_gflops"]
        lines.append(f"  Pearson r(log10 Gflops, final FID) = {r:.2f} over {len(d['rows'])} sizes: {rows}.")
    if "bigger_more_compute_efficient" in f:
        d = f["bigger_more_compute_efficient"]
        rows = ", ".join(f"{r['label']} {r['fid']:.2f}" for r in d["rows"])
        lines.append(
            f"- {PAPER['bigger_more_compute_efficient']}: **{'reproduced' if d['reproduced'] else 'not reproduced'}**."
        )
        lines.append(
            f"  FID at {d['train_flops'] / 1e12:.3g} training TFLOPs (the smallest final compute; interpolated in "
            f"log compute), smallest model first: {rows}; r(log10 Gflops, FID) = {d['pearson_log_gflops']:.2f}."
        )
    elif len(analysis.size_table(results)) > 1:
        why = "not testable (the sizes' compute ranges do not overlap)"
        lines.append(f"- {PAPER['bigger_more_compute_efficient']}: {why}.")
    return lines


def _evaluations(results: dict) -> list[str]:
    lines = [
        "## Every evaluation",
        "",
        "| run | step | train TFLOPs | FID | class agreement |",
        "|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        for e in r["evaluations"]:
            lines.append(
                f"| {r['id']} | {e['step']} | {e['train_flops'] / 1e12:.3g} | {e.get('fid', math.nan):.2f} | "
                f"{100 * e.get('class_accuracy', math.nan):.1f}% |"
            )
    return lines


def render(results: dict, charts: list[Path]) -> str:
    """The text of report.md."""
    lines = _setting(results) + [""] + _findings(results) + ["", "## Variants (final evaluation)", ""]
    lines += _variant_table(results) + ["", "## Plots", ""]
    lines += [f"![{c.stem}]({c.name})" for c in charts]
    lines += [""] + _evaluations(results)
    return "\n".join(lines) + "\n"


def write_report(results: dict, folder: Path) -> list[Path]:
    """Charts and report.md into ``folder``; returns their paths (report.md last)."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = study_charts(results, folder)
    path = folder / "report.md"
    path.write_text(render(results, charts), encoding="utf-8")
    return [*charts, path]
