"""``results.json``: every run with its sizes and costs, and every evaluation of its checkpoints.

The report and the plots are drawn from this file alone (``dit study --plot RESULTS.json``), so it
holds everything they need: the spec, the real-vs-real baseline, and per run its axes, parameters,
Gflops, training FLOPs per step, sampling FLOPs per image and, per evaluated checkpoint, the step,
the training FLOPs and images seen up to it, and the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write_json
from dit.study.grid import Run
from dit.study.runner import read_state, run_dir_of
from dit.study.setup import Setup
from dit.study.spec import StudySpec

SCHEMA = 1


def run_record(run: Run, state: dict) -> dict:
    """One run's entry: its plan, whether it finished, and its evaluations in step order."""
    evals = []
    for e in sorted(state["evaluations"].values(), key=lambda e: e["step"]):
        evals.append(
            {
                **e,
                "images": e["step"] * run.batch_size,
                "train_flops": e["step"] * run.train_flops_per_step,
            }
        )
    return {
        **run.to_dict(),
        "done": bool(state["done"]),
        "train_runs": state["train_runs"],
        "train_seconds": round(state["train_seconds"], 2),
        "evaluations": evals,
    }


def collect(spec: StudySpec, runs: list[Run], out: Path, setup: Optional[Setup]) -> dict:
    """The content of ``results.json`` from the runs' state files."""
    return {
        "schema": SCHEMA,
        "spec": spec.to_dict(),
        "budget": spec.budget.describe(),
        "conventions": {
            "gflops": "multiply-adds of one forward pass for one image / 1e9 (the paper's Gflops)",
            "train_flops": "6 x forward multiply-adds x batch x steps (2 FLOPs per MAC; backward = 2 forwards)",
            "sampling_flops_per_image": "2 x forward multiply-adds x model calls per image (guidance doubles them)",
        },
        "real_vs_real": setup.real_vs_real if setup else None,
        "runs": [run_record(r, read_state(run_dir_of(out, r))) for r in runs],
    }


def write_results(results: dict, path: Path) -> None:
    atomic_write_json(path, results)


def load_results(path: str | Path) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("runs"), list):
        raise UserError(f"{p} is not a `dit study` results.json (schema {SCHEMA})")
    return data
