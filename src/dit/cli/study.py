"""`dit study`: a grid of training runs evaluated at checkpoints, and the paper-style report.

Parse flags → :class:`dit.study.spec.StudySpec` (a TOML/JSON file, flags overriding its fields) →
:func:`dit.study.runner.run_study` → ``results.json`` → :func:`dit.study.report.write_report`.
"""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_float, positive_int
from dit.cli.flags import add_fields, from_args, given
from dit.study.spec import BUDGET, GRID, StudySpec

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

    for title in (GRID, BUDGET):  # --help lists the sections in this order
        p.add_argument_group(title)
    add_fields(p, StudySpec)


BUDGET_FLAGS = ("steps", "images", "flops", "minutes")


def build_spec(args: argparse.Namespace) -> StudySpec:
    """The spec file (or the defaults) with every given flag applied; validated."""
    import dataclasses

    spec = StudySpec.load(args.spec) if args.spec else StudySpec()
    if given(args) & set(BUDGET_FLAGS):  # a budget flag replaces the spec's budget
        spec = dataclasses.replace(spec, steps=None, images=None, flops=None, minutes=None)
    return from_args(StudySpec, args, spec).validate()


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
