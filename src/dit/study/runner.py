"""Running a study: the shared setup, one run (train → sample → eval per checkpoint), and the scheduler.

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
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from dit.data.digits import export_digits
from dit.demo.pipeline import write_real_subset
from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write_json, list_checkpoints, step_of
from dit.study.grid import Run
from dit.study.spec import DIGITS, StudySpec

RunCommand = Callable[[list[str]], int]
Say = Callable[[str], None]
EVAL_KEYS = ("fid", "sfid", "class_accuracy", "precision", "recall", "inception_score")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_command(argv: Sequence[str]) -> str:
    return "dit " + " ".join(shlex.quote(a) for a in argv)


def _run(run_command: RunCommand, argv: list[str]) -> None:
    code = run_command(argv)
    if code != 0:
        raise UserError(f"`{format_command(argv)}` failed (exit status {code}); see the error above")


def _device(spec: StudySpec) -> list[str]:
    return ["--device", spec.device] if spec.device else []


# ---------------------------------------------------------------------------------------------
# Setup shared by every run: data, evaluation features, the real-vs-real baseline
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    train_data: str
    reference: str
    features: str
    real_vs_real: Optional[dict]  # the metrics of real training images against the reference


def prepare(spec: StudySpec, out: Path, run_command: RunCommand, say: Say = _stderr) -> Setup:
    """Export the digits and train the study's classifier (digits), score real images; once per study."""
    record = out / "setup.json"
    if record.is_file():
        return Setup(**json.loads(record.read_text()))
    if spec.data != DIGITS:
        setup = Setup(spec.data, str(spec.reference), str(spec.features), None)
        atomic_write_json(record, setup.__dict__)
        return setup
    say(f"study: exporting the bundled digits at {spec.image_size}px to {out / 'data'}")
    export = export_digits(out / "data", spec.image_size, spec.held_out_fraction, 0)
    classifier = out / "classifier.safetensors"
    if not classifier.is_file():
        say(f"study: training the evaluation classifier on the {export.num_test} held-out digits")
        _run(
            run_command,
            [
                "train-classifier",
                "--data-path",
                str(export.test_dir),
                "--out",
                str(classifier),
                "--image-size",
                str(spec.image_size),
                "--width",
                str(spec.classifier_width),
                "--epochs",
                str(spec.classifier_epochs),
                "--seed",
                "0",
                *_device(spec),
            ],
        )
    features = f"classifier:{classifier}"
    real = out / "real_train.npz"
    n = write_real_subset(Path(export.train_dir), real, spec.num_samples, 0)
    real_eval = ["eval", str(real), str(export.test_dir), "--features", features, "--out", str(out / "real.eval.json")]
    _run(run_command, real_eval + _device(spec))
    ev = json.loads((out / "real.eval.json").read_text())
    real_vs_real = {k: ev[k] for k in EVAL_KEYS if k in ev} | {"num_images": n}
    setup = Setup(str(export.train_dir), str(export.test_dir), features, real_vs_real)
    atomic_write_json(record, setup.__dict__)
    return setup


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def train_argv(spec: StudySpec, run: Run, run_dir: Path, setup: Setup) -> list[str]:
    """`dit train` for one run: the same flags `dit demo` passes, with the run's axes."""
    argv = [
        "train",
        "--data-path",
        setup.train_data,
        "--image-size",
        str(spec.image_size),
        "--vae",
        spec.vae,
        *(["--no-flip"] if spec.data == DIGITS else []),  # a mirrored digit is another glyph
        "--depth",
        str(run.depth),
        "--hidden-size",
        str(run.hidden_size),
        "--num-heads",
        str(run.num_heads),
        "--patch-size",
        str(run.patch_size),
        "--block",
        run.block,
        "--recipe",
        run.recipe,
        "--global-batch-size",
        str(run.batch_size),
        "--results-dir",
        str(run_dir / "train"),
        "--ckpt-every",
        str(run.ckpt_every),
        "--keep-last",
        "0",
        "--log-every",
        str(min(run.ckpt_every, 50)),
        "--num-workers",
        "0",
        "--seed",
        str(run.seed),
        *_device(spec),
    ]
    argv += ["--max-steps", str(run.max_steps)] if run.max_steps else []
    argv += ["--max-minutes", str(run.max_minutes)] if run.max_minutes else []
    argv += ["--lr", str(spec.lr)] if spec.lr is not None else []
    argv += ["--warmup-steps", str(spec.warmup_steps)] if spec.warmup_steps is not None else []
    return argv + list(spec.train_args)


def sample_argv(spec: StudySpec, run: Run) -> list[str]:
    """`dit sample` of one checkpoint (``{ckpt}`` and ``{samples}`` are filled per checkpoint)."""
    return [
        "sample",
        "--ckpt",
        "{ckpt}",
        "--num-samples",
        str(spec.num_samples),
        "--sampler",
        run.sampler,
        "--num-sampling-steps",
        str(spec.sampling_steps),
        "--cfg-scale",
        str(spec.cfg_scale),
        "--seed",
        "0",  # every checkpoint of every run draws from the same noise
        "--batch-size",
        "100",
        "--out",
        "{samples}",
        *_device(spec),
    ]


def eval_argv(spec: StudySpec, setup: Setup) -> list[str]:
    """`dit eval` of one checkpoint's samples against the reference (``{samples}``, ``{result}``)."""
    return ["eval", "{samples}", setup.reference, "--features", setup.features, "--out", "{result}", *_device(spec)]


def write_plan(spec: StudySpec, run: Run, run_dir: Path, setup: Setup) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = {
        "run": run.to_dict(),
        "train": train_argv(spec, run, run_dir, setup),
        "sample": sample_argv(spec, run),
        "eval": eval_argv(spec, setup),
    }
    atomic_write_json(run_dir / "plan.json", plan)


def read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    if not path.is_file():
        return {"trained": False, "done": False, "train_runs": 0, "train_seconds": 0.0, "evaluations": {}}
    return json.loads(path.read_text())


def _fill(argv: list[str], **values: str) -> list[str]:
    return [a.format(**values) if "{" in a else a for a in argv]


def run_one(run_dir: Path, run_command: RunCommand, say: Say = _stderr) -> dict:
    """Train one run (or resume it) and evaluate each of its checkpoints not yet evaluated."""
    plan = json.loads((run_dir / "plan.json").read_text())
    state = read_state(run_dir)
    ckpt_dir = run_dir / "train" / "checkpoints"
    if not state["trained"]:
        resume = ["--resume", "auto"] if list_checkpoints(ckpt_dir) else []
        say(f"{plan['run']['id']}: {format_command(plan['train'] + resume)}")
        start = time.monotonic()
        _run(run_command, plan["train"] + resume)
        state["train_runs"] += 1  # times `dit train` ran for this run (a restart must not add one)
        state["train_seconds"] += time.monotonic() - start
        atomic_write_json(run_dir / "state.json", state)
        last = list_checkpoints(ckpt_dir)
        budget = plan["run"]["max_steps"]
        reached = step_of(last[-1]) if last else 0
        if budget is not None and (reached or 0) < budget:  # stopped by a signal: resume next time
            raise UserError(f"{plan['run']['id']}: training stopped at step {reached} of {budget}; rerun to resume")
        state["trained"] = True
        atomic_write_json(run_dir / "state.json", state)
    checkpoints = list_checkpoints(ckpt_dir)
    wanted = plan["run"]["eval_steps"]
    for ckpt in checkpoints:
        step = step_of(ckpt)
        if str(step) in state["evaluations"] or (wanted and step not in wanted and ckpt != checkpoints[-1]):
            continue
        samples = run_dir / "samples" / f"{step:07d}.npz"
        result = samples.with_suffix(".eval.json")
        start = time.monotonic()
        _run(run_command, _fill(plan["sample"], ckpt=str(ckpt), samples=str(samples)))
        _run(run_command, _fill(plan["eval"], samples=str(samples), result=str(result)))
        ev = json.loads(result.read_text())
        state["evaluations"][str(step)] = {
            "step": step,
            **{k: float(ev[k]) for k in EVAL_KEYS if k in ev},
            "seconds": round(time.monotonic() - start, 2),
        }
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
    setup = prepare(spec, out, run_command, say)
    for run in runs:
        write_plan(spec, run, run_dir_of(out, run), setup)
    todo = [r for r in runs if not read_state(run_dir_of(out, r))["done"]]
    say(f"study: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run ({jobs} at a time)")
    gpus = gpu_count(spec)
    progress = Progress(runs, out)
    active: dict[int, tuple[Run, subprocess.Popen, io.TextIOWrapper]] = {}
    failed: list[str] = []
    last_report = time.monotonic()
    queue = list(todo)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the workers too
    try:
        while queue or active:
            while queue and len(active) < jobs:
                slot = next(i for i in range(jobs) if i not in active)
                run = queue.pop(0)
                d = run_dir_of(out, run)
                log = open(d / "worker.log", "a", encoding="utf-8")
                env = _worker_env(threads, slot, gpus)
                proc = subprocess.Popen(worker(d), stdout=log, stderr=subprocess.STDOUT, env=env)
                active[slot] = (run, proc, log)
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
        for _, proc, log in active.values():  # interrupted: stop the workers (their runs resume next time)
            proc.terminate()  # `dit train` saves a checkpoint on SIGTERM and stops
            proc.wait()
            log.close()
    return failed
