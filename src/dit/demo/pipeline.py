"""`dit demo`'s library function: digits → classifier → DiT → samples → metrics, in one run folder.

The demo is a preset of the other commands' flags, not a separate toy path: :func:`stage_commands`
turns a :class:`dit.config.DemoConfig` into the argv of `dit train-classifier`, `dit train`,
`dit sample` and `dit eval`, and :func:`run_demo` runs them through :func:`dit.cli.main.main`
exactly as a user typing them would (the commands are saved in ``demo.json`` so they can be
rerun one by one). Around them it only does what no command does: export the digits, pick a
balanced real subset for the real-vs-real figure, cut the grid from the samples, draw the
denoising strip and the loss curve, and gather ``metrics.json``.

Run folder (``cfg.out``)::

    data/{train,test}/<digit>/*.png   the exported digits (test = held out from the DiT)
    classifier.safetensors (+ .json)  the evaluation classifier, trained on data/test
    train/                            the `dit train` run (run.json, log.txt, metrics.csv, checkpoints/)
    samples.npz (+ .protocol.json)    guided class-balanced samples (`dit sample`)
    grid.png                          the first ``grid_per_class`` samples of each class, one row per class
    denoising.png                     one sample from noise to digit (top: x_t, bottom: predicted x_0)
    loss_curve.png                    loss and MSE against step
    eval/                             `dit eval` results for the samples and for real digits
    metrics.json, demo.json           the headline numbers; the config and the commands run
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dit.config import DEMO_NUM_CLASSES, DemoConfig, SampleConfig
from dit.data.digits import export_digits
from dit.demo.plots import loss_curve_image, read_metrics_csv, strip_image
from dit.diffusion import build_objective
from dit.errors import UserError
from dit.evaluation.classifier import accuracy, load_classifier
from dit.sampling import ImageSampler, load_for_sampling
from dit.evaluation.io import load_images
from dit.sampling.writers import to_uint8, write_npz, write_png, write_samples
from dit.runtime import rng
from dit.runtime.checkpoint import atomic_write_json, latest_checkpoint, load_checkpoint

NUM_CLASSES = DEMO_NUM_CLASSES
CHECKPOINT_PLACEHOLDER = "<last checkpoint>"
HEADLINE = ("fid", "sfid", "inception_score", "precision", "recall", "class_accuracy")


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
    "data": "data",
    "train_data": "data/train",
    "test_data": "data/test",
    "classifier": "classifier.safetensors",
    "run": "train",
    "samples": "samples.npz",
    "grid": "grid.png",
    "strip": "denoising.png",
    "loss_curve": "loss_curve.png",
    "real": "eval/real_train.npz",
    "eval_samples": "eval/samples.eval.json",
    "eval_real": "eval/real.eval.json",
    "metrics": "metrics.json",
    "config": "demo.json",
}


# ---------------------------------------------------------------------------------------------
# The preset: DemoConfig → command lines of the other sub-commands
# ---------------------------------------------------------------------------------------------


def _device(cfg: DemoConfig) -> list[str]:
    return ["--device", cfg.device] if cfg.device else []


DEFAULT_SAMPLERS = {"fast": "heun", "paper": "dpm++2m"}  # a flow model's ODE solver; the ε-model's fast solver


def sampler_of(cfg: DemoConfig) -> str:
    """The sampler the demo draws with: ``cfg.sampler``, or the recipe's own fast sampler."""
    return cfg.sampler or DEFAULT_SAMPLERS[cfg.recipe]


def _ema_flags(cfg: DemoConfig) -> list[str]:
    """The paper recipe's constant EMA is warmed up for a short run; the fast recipe brings its half-life EMA."""
    return ["--ema-decay", str(cfg.ema_decay), "--ema-warmup"] if cfg.recipe == "paper" else []


def stage_commands(cfg: DemoConfig, checkpoint: str = CHECKPOINT_PLACEHOLDER) -> dict[str, list[str]]:
    """The argv (without the leading ``dit``) of every sub-command the demo runs, in order."""
    p = RunPaths(Path(cfg.out))
    classifier = f"classifier:{p.classifier}"
    return {
        "train-classifier": [
            "train-classifier",
            "--data-path",
            str(p.test_data),
            "--out",
            str(p.classifier),
            "--image-size",
            str(cfg.image_size),
            "--width",
            str(cfg.classifier_width),
            "--epochs",
            str(cfg.classifier_epochs),
            "--seed",
            str(cfg.seed),
            *_device(cfg),
        ],
        "train": [
            "train",
            "--data-path",
            str(p.train_data),
            "--image-size",
            str(cfg.image_size),
            "--vae",
            "none",
            "--no-flip",  # a mirrored digit is another glyph
            "--depth",
            str(cfg.depth),
            "--hidden-size",
            str(cfg.hidden_size),
            "--num-heads",
            str(cfg.num_heads),
            "--patch-size",
            str(cfg.patch_size),
            "--global-batch-size",
            str(cfg.batch_size),
            "--results-dir",
            str(p.run),
            "--max-steps",
            str(cfg.max_steps),
            *(["--max-minutes", str(cfg.max_minutes)] if cfg.max_minutes else []),
            "--ckpt-every",
            str(cfg.max_steps),
            "--log-every",
            str(cfg.log_every),
            "--lr",
            str(cfg.lr),
            "--recipe",
            cfg.recipe,
            "--warmup-steps",
            str(cfg.warmup_steps),
            *_ema_flags(cfg),
            "--precision",
            cfg.precision,
            "--num-workers",
            "0",
            "--seed",
            str(cfg.seed),
            *_device(cfg),
        ],
        "sample": [
            "sample",
            "--ckpt",
            checkpoint,
            "--num-samples",
            str(cfg.num_samples),
            "--sampler",
            sampler_of(cfg),
            "--num-sampling-steps",
            str(cfg.sampling_steps),
            "--cfg-scale",
            str(cfg.cfg_scale),
            "--seed",
            str(cfg.seed),
            "--batch-size",
            "100",
            "--precision",
            cfg.precision,
            "--out",
            str(p.samples),
            *_device(cfg),
        ],
        "eval-samples": [
            "eval",
            str(p.samples),
            str(p.test_data),
            "--features",
            classifier,
            "--out",
            str(p.eval_samples),
            *_device(cfg),
        ],
        "eval-real": [
            "eval",
            str(p.real),
            str(p.test_data),
            "--features",
            classifier,
            "--out",
            str(p.eval_real),
            *_device(cfg),
        ],
    }


def format_command(argv: Sequence[str]) -> str:
    return "dit " + " ".join(shlex.quote(a) for a in argv)


def check_config(cfg: DemoConfig) -> None:
    """Settings the stages would only reject late (after minutes of training) are refused up front
    (``DemoConfig.validate``; ``run_demo`` calls it)."""
    cfg.validate()


# ---------------------------------------------------------------------------------------------
# Pieces no sub-command does
# ---------------------------------------------------------------------------------------------


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices, as equal a share per class as possible (seeded choice within each class).

    Ordered class by class in turn (like `dit sample`'s balanced labels, sample i of class i mod K),
    never sorted by class: the Inception Score's splits are contiguous, and a split holding one
    class would score 1.
    """
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    chosen: list[int] = []
    while len(chosen) < n and any(pools):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=np.int64)


def write_real_subset(train_dir: Path, out: Path, n: int, seed: int) -> int:
    """A class-balanced ``.npz`` of ``n`` real training digits (the real-vs-real FID's 'samples')."""
    real = load_images(train_dir)
    labels = real.require_labels(train_dir)
    idx = balanced_subset(labels, n, seed)
    write_npz(out, real.images[idx], labels[idx])
    return len(idx)


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


def denoising_frames(cfg: DemoConfig, checkpoint: str, index: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """(x_t frames, predicted-x_0 frames), each uint8 (F, H, W, 3), of sample ``index`` of `dit sample`.

    Same weights, sampler, guidance and seed as the samples file, so the last x_t frame is that
    file's image ``index`` (up to float summation order: it is drawn here in a batch of one).
    Column j shows the state after j steps (j = 0: the noise x_T) and the model's x_0 prediction
    from that state.
    """
    import torch

    scfg = SampleConfig(
        ckpt=checkpoint,
        sampler=sampler_of(cfg),
        num_sampling_steps=cfg.sampling_steps,
        cfg_scale=cfg.cfg_scale,
        seed=cfg.seed,
        precision=cfg.precision,
        device=cfg.device,
    )
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = load_for_sampling(scfg, device)
    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    sampler = ImageSampler(loaded.model, diffusion, loaded.codec, scfg, device)
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


def _run_command(run: Callable[[list[str]], int], argv: list[str]) -> None:
    """One sub-command through ``run`` (the `dit` entry point: same parsing, same errors as the shell)."""
    code = run(argv)
    if code != 0:
        raise UserError(f"`{format_command(argv)}` failed (exit status {code}); see the error above")


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
    run_command: Callable[[list[str]], int],
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict:
    """Run the whole demo for ``cfg``; returns the content of ``metrics.json``.

    ``run_command(argv) -> exit status`` runs one `dit` sub-command (``dit.cli.main.main``: the CLI
    passes it in, so ``demo`` does not import ``cli``).
    """
    check_config(cfg)
    paths = RunPaths(Path(cfg.out))
    _check_out(paths, cfg.resume)
    started = time.monotonic()
    stages = _Stages(7, say)
    commands = stage_commands(cfg)
    record: dict[str, Any] = {"config": cfg.to_dict(), "commands": {k: format_command(v) for k, v in commands.items()}}

    export = stages.run(
        "export",
        f"exporting the bundled digits at {cfg.image_size}px to {paths.data}",
        lambda: export_digits(paths.data, cfg.image_size, cfg.held_out_fraction, cfg.seed),
    )
    record["data"] = dataclasses.asdict(export)
    atomic_write_json(paths.config, record)

    def classifier() -> dict:
        if not (cfg.resume and paths.classifier.is_file()):
            _run_command(run_command, commands["train-classifier"])
        return _classifier_accuracy(paths)

    cls = stages.run(
        "classifier", f"training the evaluation classifier on the {export.num_test} held-out digits", classifier
    )

    def train() -> Path:
        _run_command(run_command, commands["train"] + (["--resume", "auto"] if cfg.resume else []))
        ckpt = latest_checkpoint(paths.run / "checkpoints")
        if ckpt is None:
            raise UserError(f"training wrote no checkpoint in {paths.run / 'checkpoints'}")
        return ckpt

    ckpt = stages.run(
        "train",
        f"training a {cfg.depth}-block DiT (D={cfg.hidden_size}, patch {cfg.patch_size}) on {export.num_train} digits",
        train,
    )
    commands = stage_commands(cfg, checkpoint=str(ckpt))
    record["commands"] = {k: format_command(v) for k, v in commands.items()}
    record["checkpoint"] = str(ckpt)
    atomic_write_json(paths.config, record)

    def sample() -> None:
        _run_command(run_command, commands["sample"])
        write_grid(paths.samples, paths.grid, cfg.grid_per_class)

    stages.run(
        "sample",
        f"sampling {cfg.num_samples} digits ({sampler_of(cfg)}, {cfg.sampling_steps} steps, guidance {cfg.cfg_scale})",
        sample,
    )

    def strip() -> None:
        xt, x0 = denoising_frames(cfg, str(ckpt), index=cfg.strip_class, label=cfg.strip_class)
        write_png(paths.strip, strip_image([xt, x0], scale=strip_scale(cfg.image_size)))

    stages.run("strip", f"drawing a digit {cfg.strip_class} from noise to {paths.strip}", strip)

    def evaluate() -> tuple[dict, dict]:
        write_real_subset(paths.train_data, paths.real, cfg.num_samples, cfg.seed)
        _run_command(run_command, commands["eval-samples"])
        _run_command(run_command, commands["eval-real"])
        return json.loads(paths.eval_samples.read_text()), json.loads(paths.eval_real.read_text())

    ev, real = stages.run("eval", "evaluating samples and real digits against the held-out digits", evaluate)
    stages.run(
        "plots", f"drawing the loss curve to {paths.loss_curve}", lambda: loss_curve(paths.run, paths.loss_curve)
    )

    metrics = _gather_metrics(cfg, paths, ckpt, cls, ev, real, stages.seconds, time.monotonic() - started)
    atomic_write_json(paths.metrics, metrics)
    say(summary(metrics, paths))
    return metrics


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


def _gather_metrics(cfg, paths, ckpt, cls, ev, real, seconds, total) -> dict:
    state = json.loads((paths.run / "run.json").read_text())
    return {
        "class_agreement": ev["class_accuracy"],
        "per_class_agreement": ev["per_class_accuracy"],
        "fid": ev["fid"],
        "fid_real_vs_real": real["fid"],
        "samples": {k: ev[k] for k in HEADLINE if k in ev},
        "real_vs_real": {k: real[k] for k in HEADLINE if k in real},
        "classifier": cls,
        "train": {
            **_final_losses(paths.run, ckpt),
            "checkpoint": str(ckpt),
            "precision": cfg.precision,
            "model": state["config"]["model"],
        },
        "sampling": {
            "sampler": sampler_of(cfg),
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
