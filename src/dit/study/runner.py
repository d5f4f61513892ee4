"""Running a study: one run (train → sample → eval per checkpoint) and the scheduler.

The shared setup is :mod:`dit.study.setup`; the command lines are :mod:`dit.study.commands`.
Everything goes through the commands a user runs — `dit train-classifier`, `dit train`,
`dit sample`, `dit eval` — called as ``run_command(argv) -> exit status`` (``dit.cli.main.main``:
the CLI passes it in, so this layer does not import ``cli``). Each run's commands are written to
``runs/<id>/plan.json`` before it starts, so any stage can be rerun by hand.

Work folder (``out``)::

    data/, classifier.safetensors    the exported digits and the study's evaluation classifier (digits only)
    setup.json                       data, reference, features and the real-vs-real scores
    runs/<id>/plan.json              the run (sizes, costs) and its exact command lines
    runs/<id>/state.json             what is finished: training, and every evaluated checkpoint
    runs/<id>/train/                 the `dit train` run folder (checkpoints/, metrics.csv)
    runs/<id>/worker.log             the run's output
    results.json, report.md, *.png   the report (dit.study.results, dit.study.report)

Resuming: a run whose state says "trained" is not trained again; a checkpoint whose evaluation is
recorded is not evaluated again; a run killed while training restarts `dit train --resume auto`
from its last checkpoint. Runs execute in worker processes (``dit study --worker RUN_DIR``), ``jobs``
at a time, each with ``threads`` torch threads (and one GPU each where there are GPUs).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write_json, list_checkpoints, step_of
from dit.study.commands import RunCommand, eval_argv, fill, format_command, run_checked, sample_argv, train_argv
from dit.study.grid import Run
from dit.study.setup import EVAL_KEYS, Setup, prepare
from dit.study.spec import StudySpec

Say = Callable[[str], None]
Active = dict[int, tuple[Run, subprocess.Popen, io.TextIOWrapper]]  # worker slot → its run, process and log


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def plan_of(spec: StudySpec, run: Run, run_dir: Path, setup: Setup) -> dict:
    """The run and its exact command lines (sampling and evaluation with per-checkpoint fields)."""
    return {
        "run": run.to_dict(),
        "train": train_argv(spec, run, run_dir, setup.train_data),
        "sample": sample_argv(spec, run),
        "eval": eval_argv(spec, setup.reference, setup.features),
    }


def write_plan(spec: StudySpec, run: Run, run_dir: Path, setup: Setup) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_of(spec, run, run_dir, setup)
    atomic_write_json(run_dir / "plan.json", plan)
    return plan


def read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    if not path.is_file():
        return {"trained": False, "done": False, "train_runs": 0, "train_seconds": 0.0, "evaluations": {}}
    return json.loads(path.read_text())


def train_run(run_dir: Path, plan: dict, run_command: RunCommand, say: Say = _stderr) -> dict:
    """`dit train` for the planned run, resumed from its last checkpoint if it has one; returns the state."""
    state = read_state(run_dir)
    ckpt_dir = run_dir / "train" / "checkpoints"
    resume = ["--resume", "auto"] if list_checkpoints(ckpt_dir) else []
    say(f"{plan['run']['id']}: {format_command(plan['train'] + resume)}")
    start = time.monotonic()
    run_checked(run_command, plan["train"] + resume)
    state["train_runs"] += 1  # times `dit train` ran for this run (a restart must not add one)
    state["train_seconds"] += time.monotonic() - start
    atomic_write_json(run_dir / "state.json", state)
    last = list_checkpoints(ckpt_dir)
    budget, reached = plan["run"]["max_steps"], step_of(last[-1]) if last else 0
    stopped_early = budget is not None and (reached or 0) < budget
    if stopped_early and plan["run"]["max_minutes"] is None:  # stopped by a signal: resume next time
        raise UserError(f"{plan['run']['id']}: training stopped at step {reached} of {budget}; rerun to resume")
    state["trained"] = True
    atomic_write_json(run_dir / "state.json", state)
    return state


def evaluate_checkpoint(plan: dict, ckpt: Path, samples: Path, result: Path, run_command: RunCommand) -> dict:
    """`dit sample` then `dit eval` of one checkpoint; its step, headline metrics and seconds."""
    start = time.monotonic()
    run_checked(run_command, fill(plan["sample"], ckpt=str(ckpt), samples=str(samples)))
    run_checked(run_command, fill(plan["eval"], samples=str(samples), result=str(result)))
    ev = json.loads(result.read_text())
    return {
        "step": step_of(ckpt),
        **{k: float(ev[k]) for k in EVAL_KEYS if k in ev},
        "seconds": round(time.monotonic() - start, 2),
    }


def run_one(run_dir: Path, run_command: RunCommand, say: Say = _stderr) -> dict:
    """Train one run (or resume it) and evaluate each of its checkpoints not yet evaluated."""
    plan = json.loads((run_dir / "plan.json").read_text())
    state = read_state(run_dir)
    if not state["trained"]:
        state = train_run(run_dir, plan, run_command, say)
    checkpoints = list_checkpoints(run_dir / "train" / "checkpoints")
    wanted = plan["run"]["eval_steps"]
    for ckpt in checkpoints:
        step = step_of(ckpt)
        if str(step) in state["evaluations"] or (wanted and step not in wanted and ckpt != checkpoints[-1]):
            continue
        samples = run_dir / "samples" / f"{step:07d}.npz"
        state["evaluations"][str(step)] = evaluate_checkpoint(
            plan, ckpt, samples, samples.with_suffix(".eval.json"), run_command
        )
        samples.unlink(missing_ok=True)  # the numbers are kept; the images are not needed again
        atomic_write_json(run_dir / "state.json", state)
        say(f"{plan['run']['id']}: step {step}: FID {state['evaluations'][str(step)].get('fid', float('nan')):.2f}")
    state["done"] = True
    atomic_write_json(run_dir / "state.json", state)
    return state


# ---------------------------------------------------------------------------------------------
# The scheduler: `jobs` worker processes at a time, a progress line per run, an overall ETA
# ---------------------------------------------------------------------------------------------


def run_dir_of(out: Path, run: Run) -> Path:
    return out / "runs" / run.id


def latest_logged_step(run_dir: Path) -> int:
    """The last step `dit train` logged (0 before the first log line)."""
    try:
        lines = (run_dir / "train" / "metrics.csv").read_text().strip().splitlines()
        return int(float(lines[-1].split(",")[0])) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def worker_command(run_dir: Path) -> list[str]:
    """The process that runs one run: `dit study --worker RUN_DIR` with this interpreter."""
    return [sys.executable, "-m", "dit", "study", "--worker", str(run_dir)]


def gpu_count(spec: StudySpec) -> int:
    if spec.device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def _worker_env(threads: int, slot: int, gpus: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)  # one run per GPU
    return env


class Progress:
    """Overall ETA from the work done so far in this invocation (work = steps × Gflops)."""

    def __init__(self, runs: list[Run], out: Path):
        self.runs, self.out = runs, out
        self.started = time.monotonic()
        self.base = self.done_work()

    def _steps(self, run: Run) -> int:
        d = run_dir_of(self.out, run)
        if read_state(d)["trained"]:
            return run.max_steps or 1
        return latest_logged_step(d)

    def done_work(self) -> float:
        return sum(self._steps(r) * r.gflops for r in self.runs)

    def total_work(self) -> float:
        return sum((r.max_steps or 1) * r.gflops for r in self.runs)

    def eta(self) -> str:
        done = self.done_work()
        rate = (done - self.base) / max(1e-9, time.monotonic() - self.started)
        if rate <= 0:
            return "ETA unknown"
        left = (self.total_work() - done) / rate / 60
        return f"{100 * done / self.total_work():.0f}% of training done, ETA {left:.1f} min"

    def line(self, run: Run) -> str:
        d = run_dir_of(self.out, run)
        st = read_state(d)
        if st["trained"]:
            what = f"evaluated {len(st['evaluations'])} checkpoints"
        else:
            what = f"step {latest_logged_step(d)}/{run.max_steps or '?'}"
        return f"  {run.id}: {what}"


def run_study(
    spec: StudySpec,
    runs: list[Run],
    out: Path,
    run_command: RunCommand,
    jobs: int = 1,
    threads: int = 1,
    progress_every: float = 60.0,
    say: Say = _stderr,
    worker: Callable[[Path], list[str]] = worker_command,
    on_finish: Callable[[], object] = lambda: None,
) -> list[str]:
    """Run every unfinished run, ``jobs`` at a time; returns the ids of runs that failed.

    ``on_finish()`` is called after each run ends (the CLI rewrites results.json there, so an
    interrupted study still leaves the finished runs' numbers).
    """
    out.mkdir(parents=True, exist_ok=True)
    setup = prepare(spec, out, run_command, lambda m: say(f"study: {m}"))
    for run in runs:
        write_plan(spec, run, run_dir_of(out, run), setup)
    todo = [r for r in runs if not read_state(run_dir_of(out, r))["done"]]
    say(f"study: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run ({jobs} at a time)")
    gpus = gpu_count(spec)
    progress = Progress(runs, out)
    active: Active = {}
    failed: list[str] = []
    last_report = time.monotonic()
    queue = list(todo)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the workers too
    try:
        while queue or active:
            while queue and len(active) < jobs:
                slot = next(i for i in range(jobs) if i not in active)
                run = queue.pop(0)
                active[slot] = (run, *_launch(worker, run_dir_of(out, run), _worker_env(threads, slot, gpus)))
                say(f"study: started {run.id} ({run.params / 1e6:.2f}M params, {run.gflops:.4f} Gflops)")
            time.sleep(0.5)
            for slot, (run, proc, log) in list(active.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del active[slot]
                if proc.returncode != 0:
                    failed.append(run.id)
                    say(f"study: {run.id} FAILED (exit {proc.returncode}); see {run_dir_of(out, run) / 'worker.log'}")
                else:
                    say(f"study: finished {run.id}; {progress.eta()}")
                on_finish()
            if active and time.monotonic() - last_report >= progress_every:
                last_report = time.monotonic()
                say("study: " + progress.eta() + "\n" + "\n".join(progress.line(r) for r, _, _ in active.values()))
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(active)
    return failed


def _launch(worker: Callable[[Path], list[str]], run_dir: Path, env: dict) -> tuple[subprocess.Popen, io.TextIOWrapper]:
    log = open(run_dir / "worker.log", "a", encoding="utf-8")
    return subprocess.Popen(worker(run_dir), stdout=log, stderr=subprocess.STDOUT, env=env), log


def _stop(active: Active) -> None:
    """Interrupted: stop the workers (their runs resume next time)."""
    for _, proc, log in active.values():
        proc.terminate()  # `dit train` saves a checkpoint on SIGTERM and stops
        proc.wait()
        log.close()
