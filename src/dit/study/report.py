"""report.md and the plots, from results.json alone."""

from __future__ import annotations

from pathlib import Path


def write_report(results: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.md"
    lines = ["| run | step | FID |", "|---|---|---|"]
    for r in results["runs"]:
        for e in r["evaluations"]:
            lines.append(f"| {r['id']} | {e['step']} | {e.get('fid', float('nan')):.2f} |")
    path.write_text("\n".join(lines) + "\n")
    return [path]
