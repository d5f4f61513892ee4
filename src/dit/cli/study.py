"""`dit study`: a grid of training runs evaluated at checkpoints, and the paper-style report.

Parse flags → :class:`dit.study.spec.StudySpec` (a TOML/JSON file, flags overriding its fields) →
:func:`dit.study.runner.run_study` → ``results.json`` → :func:`dit.study.report.write_report`.
"""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_float, positive_int
from dit.config import BLOCK_DESIGNS, RECIPES, SAMPLER_NAMES
from dit.study.spec import StudySpec

HELP = "the paper's design-space and scaling study: a grid of runs, evaluated at checkpoints, with a report"
DESCRIPTION = (
    "Trains a grid of runs (model sizes x patch sizes x block designs x recipes x seeds; a TOML or JSON SPEC, "
    "flags overriding its fields), each to the same budget (steps, images, training FLOPs or minutes), evaluates "
    "every checkpoint with one fixed sampler and guidance (`dit sample` + `dit eval`; on the bundled digits with "
    "a classifier the study trains), and writes OUT/results.json, OUT/report.md and plots in the paper's style "
    "(FID vs steps per design and per size, FID vs Gflops with the correlation, FID vs training and sampling "
    "compute). Rerunning skips finished runs and evaluations; a run killed mid-way resumes from its last "
    "checkpoint. --plot RESULTS.json redraws the report from results alone."
)

_S = StudySpec()


def _csv(kind):
    def parse(text: str) -> list:
        return [kind(v) for v in text.split(",") if v.strip()]

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", default=None, help="study spec (.toml or .json); flags below override it")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="dit-study", help="work folder (runs, results.json, report.md, plots)")
    g.add_argument("--jobs", type=positive_int, default=1, help="runs trained at once (on GPUs: one per GPU)")
    g.add_argument("--threads", type=positive_int, default=1, help="torch threads of each run")
    g.add_argument("--progress-every", type=positive_float, default=60.0, help="seconds between progress lines")
    g.add_argument("--dry-run", action="store_true", help="print the runs and their `dit train` commands, run nothing")
    g.add_argument("--plot", metavar="RESULTS_JSON", default=None, help="only redraw report.md and plots from results")
    g.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one run, in its own process

    a = p.add_argument_group("grid (comma-separated lists; override the spec's top-level axes)")
    a.add_argument("--models", type=_csv(str), default=None, help="sizes: registry (S, B, ...) or custom dD-wW-hH")
    a.add_argument("--patch-sizes", type=_csv(int), default=None, help="patch sizes")
    a.add_argument("--blocks", type=_csv(str), default=None, help=f"block designs: {', '.join(BLOCK_DESIGNS)}")
    a.add_argument("--recipes", type=_csv(str), default=None, help=f"recipes: {', '.join(RECIPES)}")
    a.add_argument("--seeds", type=_csv(int), default=None, help="seeds")

    b = p.add_argument_group("budget (one of) and evaluation")
    b.add_argument("--steps", type=positive_int, default=None, help="training steps per run")
    b.add_argument("--images", type=positive_int, default=None, help="training images per run")
    b.add_argument("--flops", type=positive_float, default=None, help="training FLOPs per run")
    b.add_argument("--minutes", type=positive_float, default=None, help="training wall minutes per run")
    b.add_argument(
        "--evaluations", type=positive_int, default=None, help=f"checkpoints evaluated per run ({_S.evaluations})"
    )
    b.add_argument("--batch-size", type=positive_int, default=None, help=f"global batch size ({_S.batch_size})")
    b.add_argument("--image-size", type=positive_int, default=None, help=f"image side ({_S.image_size})")
    b.add_argument("--sampler", choices=SAMPLER_NAMES, default=None, help="sampler (default: the recipe's own)")
    b.add_argument("--sampling-steps", type=positive_int, default=None, help=f"sampler steps ({_S.sampling_steps})")
    b.add_argument("--cfg-scale", type=float, default=None, help=f"guidance scale ({_S.cfg_scale})")
    b.add_argument("--num-samples", type=positive_int, default=None, help=f"samples per evaluation ({_S.num_samples})")
    b.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


OVERRIDES = (
    "models", "patch_sizes", "blocks", "recipes", "seeds", "evaluations", "batch_size", "image_size",
    "sampler", "sampling_steps", "cfg_scale", "num_samples", "device",
)  # fmt: skip
BUDGET_FLAGS = ("steps", "images", "flops", "minutes")


def build_spec(args: argparse.Namespace) -> StudySpec:
    """The spec file (or the defaults) with every given flag applied; validated."""
    import dataclasses

    spec = StudySpec.load(args.spec) if args.spec else StudySpec()
    changes = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    budget = {k: getattr(args, k) for k in BUDGET_FLAGS if getattr(args, k) is not None}
    if budget:  # a budget flag replaces the spec's budget
        changes.update({k: budget.get(k) for k in BUDGET_FLAGS})
    return dataclasses.replace(spec, **changes).validate()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dit.cli.main import main

    if args.worker:
        from dit.study.runner import run_one

        run_one(Path(args.worker), run_command=main)
        return 0
    from dit.study.report import write_report
    from dit.study.results import load_results

    if args.plot:
        results = load_results(args.plot)
        for path in write_report(results, Path(args.plot).parent):
            print(path)
        return 0

    from dit.errors import UserError
    from dit.study.grid import expand
    from dit.study.results import collect, write_results
    from dit.study.commands import format_command, train_argv
    from dit.study.runner import run_study
    from dit.study.setup import planned_setup, prepare

    spec = build_spec(args)
    runs = expand(spec)
    out = Path(args.out)
    if args.dry_run:
        from dit.study.runner import run_dir_of

        train_data = planned_setup(spec, out).train_data
        for r in runs:
            print(f"# {r.id}  grids={','.join(r.grids)}  params={r.params}  Gflops={r.gflops:.4f}  steps={r.max_steps}")
            print(format_command(train_argv(spec, r, run_dir_of(out, r), train_data)))
        return 0

    def save() -> dict:
        results = collect(spec, runs, out, prepare(spec, out, main))
        write_results(results, out / "results.json")
        return results

    failed = run_study(
        spec, runs, out, main, jobs=args.jobs, threads=args.threads, progress_every=args.progress_every, on_finish=save
    )
    results = save()
    for path in [out / "results.json", *write_report(results, out)]:
        print(path)
    if failed:
        raise UserError(f"{len(failed)} runs failed ({', '.join(failed)}); see their worker.log, then rerun to resume")
    return 0
