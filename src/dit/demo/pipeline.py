"""`dit demo`'s library function: digits → classifier → DiT → samples → metrics, as a built-in one-run study.

:func:`demo_study` turns a :class:`dit.config.DemoConfig` into a :class:`~dit.study.spec.StudySpec`
of one run, and :func:`run_demo` runs it with the study's own pieces: its setup
(:mod:`dit.study.setup`: export the digits, train the evaluation classifier, score real digits),
its training step and its evaluation of a checkpoint (:mod:`dit.study.runner`), all through the
command lines :mod:`dit.study.commands` builds, run by :func:`dit.cli.main.main` exactly as a user
typing them would (they are saved in ``demo.json`` so they can be rerun one by one). Around them it
only does what a study does not: cut the grid from the samples, draw the denoising strip and the
loss curve, gather ``metrics.json`` and print a summary.

Run folder (``cfg.out``)::

    data/{train,test}/<digit>/*.png   the exported digits (test = held out from the DiT)
    classifier.safetensors (+ .json)  the evaluation classifier, trained on data/test
    real_train.npz, real.eval.json    real digits scored like the samples (the real-vs-real FID)
    setup.json, plan.json, state.json the study's records: setup, the run's commands, what is done
    train/                            the `dit train` run (run.json, log.txt, metrics.csv, checkpoints/)
    samples.npz (+ .protocol.json)    guided class-balanced samples (`dit sample`)
    eval/samples.eval.json            `dit eval` of the samples
    grid.png                          the first ``grid_per_class`` samples of each class, one row per class
    denoising.png                     one sample from noise to digit (top: x_t, bottom: predicted x_0)
    loss_curve.png                    loss and MSE against step
    metrics.json, demo.json           the headline numbers; the config and the commands run
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dit.config import DEMO_NUM_CLASSES, DemoConfig, GenerationRequest, SampleConfig
from dit.demo.plots import loss_curve_image, read_metrics_csv, strip_image
from dit.diffusion import build_objective
from dit.errors import UserError
from dit.evaluation.classifier import accuracy, load_classifier
from dit.sampling import ImageSampler, load_for_sampling
from dit.evaluation.io import load_images
from dit.sampling.writers import to_uint8, write_png, write_samples
from dit.runtime import rng
from dit.runtime.checkpoint import atomic_write_json, latest_checkpoint, load_checkpoint
from dit.study.commands import TRAIN, RunCommand, fill, flags, format_command
from dit.study.grid import Run, expand
from dit.study.runner import evaluate_checkpoint, plan_of, train_run, write_plan
from dit.study.setup import EVAL_KEYS, Setup, planned_setup, prepare, setup_commands
from dit.study.spec import DIGITS, StudySpec

__all__ = ["check_config", "demo_study", "format_command", "run_demo", "stage_commands"]

NUM_CLASSES = DEMO_NUM_CLASSES
CHECKPOINT_PLACEHOLDER = "<last checkpoint>"


@dataclass(frozen=True)
class RunPaths:
    """Every file a demo run writes, relative to its root."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        rel = _LAYOUT.get(name)
        if rel is None:
            raise AttributeError(name)
        return self.root / rel


_LAYOUT = {
    "train_data": "data/train",
    "classifier": "classifier.safetensors",
    "run": "train",
    "samples": "samples.npz",
    "grid": "grid.png",
    "strip": "denoising.png",
    "loss_curve": "loss_curve.png",
    "eval_samples": "eval/samples.eval.json",
    "metrics": "metrics.json",
    "config": "demo.json",
}


# ---------------------------------------------------------------------------------------------
# The preset: DemoConfig → a study of one run → command lines of the other sub-commands
# ---------------------------------------------------------------------------------------------


def demo_study(cfg: DemoConfig) -> tuple[StudySpec, Run]:
    """The one-run study the demo is: its model, recipe and seed as the only point of each axis, its
    steps as the budget (stopped early after ``max_minutes``), the last checkpoint evaluated."""
    spec = StudySpec(
        name="demo",
        data=DIGITS,
        image_size=cfg.image_size,
        vae="none",
        held_out_fraction=cfg.held_out_fraction,
        classifier_epochs=cfg.classifier_epochs,
        classifier_width=cfg.classifier_width,
        eval_seed=cfg.seed,
        models=[{"depth": cfg.depth, "hidden_size": cfg.hidden_size, "num_heads": cfg.num_heads}],
        patch_sizes=[cfg.patch_size],
        recipes=[cfg.recipe],
        seeds=[cfg.seed],
        steps=cfg.max_steps,
        evaluations=1,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        max_minutes=cfg.max_minutes,
        log_every=cfg.log_every,
        precision=cfg.precision,
        # the paper recipe's constant EMA is warmed up for a short run; the fast recipe brings its half-life EMA
        train_args=flags(TRAIN, ema_decay=cfg.ema_decay, ema_warmup=True) if cfg.recipe == "paper" else [],
        sampler=cfg.sampler,
        sampling_steps=cfg.sampling_steps,
        cfg_scale=cfg.cfg_scale,
        num_samples=cfg.num_samples,
        device=cfg.device,
    )
    (run,) = expand(spec)
    return spec, run


def stage_commands(cfg: DemoConfig, checkpoint: str = CHECKPOINT_PLACEHOLDER) -> dict[str, list[str]]:
    """The argv (without the leading ``dit``) of every sub-command the demo runs, in order."""
    spec, run = demo_study(cfg)
    paths = RunPaths(Path(cfg.out))
    plan = plan_of(spec, run, paths.root, planned_setup(spec, paths.root))
    setup = setup_commands(spec, paths.root)
    samples = str(paths.samples)
    return {
        "train-classifier": setup["train-classifier"],
        "train": plan["train"],
        "sample": fill(plan["sample"], ckpt=checkpoint, samples=samples),
        "eval-samples": fill(plan["eval"], samples=samples, result=str(paths.eval_samples)),
        "eval-real": setup["eval-real"],
    }


def check_config(cfg: DemoConfig) -> None:
    """Settings the stages would only reject late (after minutes of training) are refused up front
    (``DemoConfig.validate``; ``run_demo`` calls it)."""
    cfg.validate()


# ---------------------------------------------------------------------------------------------
# Pieces no sub-command does
# ---------------------------------------------------------------------------------------------


def write_grid(samples: Path, out: Path, per_class: int) -> np.ndarray:
    """The first ``per_class`` samples of every class as a PNG grid, one row per class (dit sample's writer)."""
    s = load_images(samples)
    n = NUM_CLASSES * per_class  # balanced labels: sample i has class i mod 10
    write_samples(out, s.images[:n], s.require_labels(samples)[:n])
    return s.images[:n]


def strip_scale(image_size: int) -> int:
    """Pixel repetition of the denoising strip: frames about 64 pixels wide (8 px digits × 8)."""
    return max(1, 64 // image_size)


def frame_indices(num_states: int, frames: int) -> list[int]:
    """``frames`` evenly spaced state indices from 0 (noise) to ``num_states - 1`` (the sample)."""
    return sorted(set(int(round(v)) for v in np.linspace(0, num_states - 1, min(frames, num_states))))


def denoising_frames(
    cfg: DemoConfig, checkpoint: str, sampler_name: str, index: int, label: int
) -> tuple[np.ndarray, np.ndarray]:
    """(x_t frames, predicted-x_0 frames), each uint8 (F, H, W, 3), of sample ``index`` of `dit sample`.

    Same weights, sampler, guidance and seed as the samples file, so the last x_t frame is that
    file's image ``index`` (up to float summation order: it is drawn here in a batch of one).
    Column j shows the state after j steps (j = 0: the noise x_T) and the model's x_0 prediction
    from that state.
    """
    import torch

    request = GenerationRequest(
        sampler=sampler_name,
        num_sampling_steps=cfg.sampling_steps,
        cfg_scale=cfg.cfg_scale,
        seed=cfg.seed,
        precision=cfg.precision,
    )
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = load_for_sampling(SampleConfig(ckpt=checkpoint, device=cfg.device), device)
    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    sampler = ImageSampler(loaded.model, diffusion, loaded.codec, request, device, loaded.defaults)
    # x_T exactly as ImageSampler draws it (the generation path's per-index noise contract)
    x_T = rng.randn_rows((1, *sampler.latent_shape), rng.example_generators(cfg.seed, [index], rng.SAMPLE_INIT))
    states, preds = [x_T], []

    def record(step: int, t: int, x: torch.Tensor, pred_x0: torch.Tensor) -> None:
        states.append(x.detach().float().cpu())
        preds.append(pred_x0.detach().float().cpu())

    final = sampler.latents([index], [label], callback=record).float().cpu()  # (1, C, h, w)
    preds.append(final)  # the last state is its own prediction
    keep = frame_indices(len(states), cfg.strip_frames)

    def pixels(xs: list) -> np.ndarray:
        x = torch.cat([xs[k] for k in keep])  # (F, C, h, w)
        return to_uint8(loaded.codec.decode(x.to(device)).cpu()).numpy()  # (F, H, W, 3)

    return pixels(states), pixels(preds)


def loss_curve(run_dir: Path, out: Path) -> None:
    """``loss_curve.png`` from the training run's ``metrics.csv`` (loss = L_simple + L_vlb, and the MSE)."""
    m = read_metrics_csv(run_dir / "metrics.csv")
    series: dict[str, np.ndarray] = {k: m[k] for k in ("loss", "mse") if k in m}
    write_png(out, loss_curve_image(m["step"], series, title="dit demo: training loss"))


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class _Stages:
    """Numbered progress lines on stderr and the wall time of every stage."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.k = total, say, 0
        self.seconds: dict[str, float] = {}

    def run(self, name: str, what: str, fn: Callable[[], object]):
        self.k += 1
        self.say(f"[{self.k}/{self.total}] {what}")
        t0 = time.monotonic()
        out = fn()
        self.seconds[name] = round(time.monotonic() - t0, 2)
        return out


def _check_out(paths: RunPaths, resume: bool) -> None:
    if paths.root.exists() and any(paths.root.iterdir()) and not resume:
        raise UserError(f"{paths.root} already holds a demo run; pass --resume to continue it or choose another --out")


def run_demo(
    cfg: DemoConfig,
    run_command: RunCommand,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict:
    """Run the whole demo for ``cfg``; returns the content of ``metrics.json``.

    ``run_command(argv) -> exit status`` runs one `dit` sub-command (``dit.cli.main.main``: the CLI
    passes it in, so ``demo`` does not import ``cli``).
    """
    check_config(cfg)
    paths = RunPaths(Path(cfg.out))
    _check_out(paths, cfg.resume)
    spec, run = demo_study(cfg)
    started = time.monotonic()
    stages = _Stages(5, say)
    setup: Setup = stages.run(
        "setup",
        f"exporting the bundled digits at {cfg.image_size}px, training the evaluation classifier, scoring real digits",
        lambda: prepare(spec, paths.root, run_command, say),
    )
    record: dict[str, Any] = {"config": cfg.to_dict(), "data": setup.data, "commands": _commands(cfg)}
    atomic_write_json(paths.config, record)
    plan = write_plan(spec, run, paths.root, setup)
    digits = (setup.data or {}).get("num_train", "the")
    what = f"a {cfg.depth}-block DiT (D={cfg.hidden_size}, patch {cfg.patch_size}) on {digits} training digits"
    ckpt = stages.run("train", f"training {what}", lambda: _train(paths, plan, run_command, say))
    record.update(commands=_commands(cfg, ckpt), checkpoint=str(ckpt))
    atomic_write_json(paths.config, record)

    def sample() -> dict:
        evaluate_checkpoint(plan, ckpt, paths.samples, paths.eval_samples, run_command)
        write_grid(paths.samples, paths.grid, cfg.grid_per_class)
        return json.loads(paths.eval_samples.read_text())

    drawn = f"{cfg.num_samples} digits ({run.sampler}, {cfg.sampling_steps} steps, guidance {cfg.cfg_scale})"
    ev = stages.run("sample", f"sampling and evaluating {drawn}", sample)

    def strip() -> None:
        xt, x0 = denoising_frames(cfg, str(ckpt), run.sampler, index=cfg.strip_class, label=cfg.strip_class)
        write_png(paths.strip, strip_image([xt, x0], scale=strip_scale(cfg.image_size)))

    stages.run("strip", f"drawing a digit {cfg.strip_class} from noise to {paths.strip}", strip)
    stages.run(
        "plots", f"drawing the loss curve to {paths.loss_curve}", lambda: loss_curve(paths.run, paths.loss_curve)
    )
    cls = _classifier_accuracy(paths)
    real = setup.real_vs_real or {}
    metrics = _gather_metrics(cfg, paths, run, ckpt, cls, ev, real, stages.seconds, time.monotonic() - started)
    atomic_write_json(paths.metrics, metrics)
    say(summary(metrics, paths))
    return metrics


def _commands(cfg: DemoConfig, ckpt: Path | None = None) -> dict[str, str]:
    argvs = stage_commands(cfg) if ckpt is None else stage_commands(cfg, checkpoint=str(ckpt))
    return {k: format_command(v) for k, v in argvs.items()}


def _train(paths: RunPaths, plan: dict, run_command: RunCommand, say: Callable[[str], None]) -> Path:
    """`dit train` (continued from its last checkpoint on --resume); the checkpoint it ends with."""
    train_run(paths.root, plan, run_command, say)
    ckpt = latest_checkpoint(paths.run / "checkpoints")
    if ckpt is None:
        raise UserError(f"training wrote no checkpoint in {paths.run / 'checkpoints'}")
    return ckpt


def _classifier_accuracy(paths: RunPaths) -> dict:
    """The classifier's accuracy on all training-split digits: real digits it never saw."""
    real = load_images(paths.train_data)
    info = json.loads(paths.classifier.with_suffix(".json").read_text())
    return {
        "test_accuracy": accuracy(
            load_classifier(paths.classifier), real.images, real.require_labels(paths.train_data)
        ),
        "num_test": int(len(real.images)),
        "val_accuracy": info.get("val_accuracy"),
        "train_accuracy": info.get("train_accuracy"),
    }


def _final_losses(run_dir: Path, ckpt: Path) -> dict:
    """Steps trained (from the checkpoint: --max-minutes may stop between log lines) and the last logged losses."""
    m = read_metrics_csv(run_dir / "metrics.csv")
    return {
        "steps": int(load_checkpoint(ckpt)["step"]),
        "last_logged_step": int(m["step"][-1]),
        **{k: float(m[k][-1]) for k in ("loss", "mse", "vb") if k in m},
    }


def _gather_metrics(cfg, paths, run, ckpt, cls, ev, real, seconds, total) -> dict:
    state = json.loads((paths.run / "run.json").read_text())
    return {
        "class_agreement": ev["class_accuracy"],
        "per_class_agreement": ev["per_class_accuracy"],
        "fid": ev["fid"],
        "fid_real_vs_real": real["fid"],
        "samples": {k: ev[k] for k in EVAL_KEYS if k in ev},
        "real_vs_real": {k: real[k] for k in EVAL_KEYS if k in real},
        "classifier": cls,
        "train": {
            **_final_losses(paths.run, ckpt),
            "checkpoint": str(ckpt),
            "precision": cfg.precision,
            "model": state["config"]["model"],
        },
        "sampling": {
            "sampler": run.sampler,
            "steps": cfg.sampling_steps,
            "cfg_scale": cfg.cfg_scale,
            "num_samples": cfg.num_samples,
            "num_reference": ev["num_reference"],
        },
        "seconds": {**seconds, "total": round(total, 2)},
        "files": {
            k: str(getattr(paths, k)) for k in ("grid", "strip", "loss_curve", "samples", "classifier", "config", "run")
        },
    }


def summary(metrics: dict, paths: RunPaths) -> str:
    """What the demo prints at the end: the numbers and where everything is."""
    c = metrics["classifier"]
    lines = [
        "",
        f"dit demo finished in {metrics['seconds']['total'] / 60:.1f} min ({metrics['train']['steps']} training steps)",
        f"  class agreement of guided samples  {metrics['class_agreement']:.1%}  "
        f"(classifier: {c['test_accuracy']:.1%} on {c['num_test']} real digits it never saw)",
        f"  FID in classifier features         samples {metrics['fid']:.2f}   real vs real "
        f"{metrics['fid_real_vs_real']:.2f}",
        f"  grid (one row per class)           {paths.grid}",
        f"  denoising strip                    {paths.strip}",
        f"  loss curve                         {paths.loss_curve}",
        f"  metrics                            {paths.metrics}",
        f"  checkpoint                         {metrics['train']['checkpoint']}",
        f"  config and commands                {paths.config}",
    ]
    if not all(math.isfinite(metrics[k]) for k in ("fid", "fid_real_vs_real", "class_agreement")):
        lines.append("  warning: a metric is not finite; see eval/*.json")
    return "\n".join(lines)
