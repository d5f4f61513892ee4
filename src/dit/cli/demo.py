"""`dit demo`: parse flags → DemoConfig → dit.demo.pipeline.run_demo."""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_float, positive_int
from dit.config import PRECISIONS, RECIPE_NAMES, SAMPLER_NAMES, DemoConfig

HELP = "the whole pipeline on bundled real digits in minutes on a CPU: train, sample, evaluate"
DESCRIPTION = (
    "Exports the 1,797 bundled handwritten digits (8x8, scikit-learn's copy of UCI's; no download) as an image folder, "
    "holds out a split, "
    "trains the evaluation classifier on it (`dit train-classifier`), trains a class-conditional pixel-space DiT "
    "(adaLN-Zero; `dit train --recipe fast`: flow matching; --recipe paper: learned sigma, L_simple + L_vlb), draws "
    "guided samples (`dit sample`) and evaluates "
    "them (`dit eval`: class agreement, and FID in the classifier's features beside the same figure for real "
    "digits). The run folder gets grid.png (one row per class), denoising.png, loss_curve.png, metrics.json, the "
    "checkpoint and demo.json (config and the exact commands run). Each flag below is passed on to those "
    "commands; --dry-run prints them."
)

_D = DemoConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=_D.out, help="run folder (refused if it holds a run, unless --resume)")
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out (training resumes from its last checkpoint)"
    )
    g.add_argument("--seed", type=int, default=_D.seed, help="seed of the split, classifier, training and samples")
    g.add_argument("--device", default=_D.device, help="cuda or cpu; unset: cuda when available")
    g.add_argument("--dry-run", action="store_true", help="print the commands the demo runs and exit")

    d = p.add_argument_group("data (the bundled 8x8 digits, scikit-learn's copy of UCI's)")
    d.add_argument(
        "--image-size",
        type=positive_int,
        default=_D.image_size,
        help="side the 8x8 digits are resized to (8 keeps the original pixels)",
    )
    d.add_argument(
        "--held-out-fraction",
        type=float,
        default=_D.held_out_fraction,
        help="share of each class held out from the DiT: the classifier's training data and the FID reference",
    )

    m = p.add_argument_group("model (dit train: a custom-size pixel-space DiT, adaLN-Zero)")
    m.add_argument("--depth", type=positive_int, default=_D.depth, help="number of DiT blocks")
    m.add_argument("--hidden-size", type=positive_int, default=_D.hidden_size, help="token width D")
    m.add_argument("--num-heads", type=positive_int, default=_D.num_heads, help="attention heads")
    m.add_argument(
        "--patch-size", type=positive_int, default=_D.patch_size, help="patch side p (tokens: (image-size/p)^2)"
    )

    t = p.add_argument_group("training (dit train)")
    t.add_argument(
        "--recipe",
        choices=RECIPE_NAMES,
        default=_D.recipe,
        help="dit train --recipe: fast (flow matching, half-life EMA) or paper (ε + learned sigma)",
    )
    t.add_argument("--batch-size", type=positive_int, default=_D.batch_size, help="global batch size")
    t.add_argument("--max-steps", type=positive_int, default=_D.max_steps, help="training steps")
    t.add_argument(
        "--max-minutes",
        type=positive_float,
        default=_D.max_minutes,
        help="stop training earlier (with a checkpoint) after this many minutes",
    )
    t.add_argument("--lr", type=positive_float, default=_D.lr, help="AdamW learning rate (after warm-up)")
    t.add_argument("--warmup-steps", type=int, default=_D.warmup_steps, help="linear lr warm-up steps")
    t.add_argument(
        "--ema-decay",
        type=float,
        default=_D.ema_decay,
        help="--recipe paper only: EMA decay (with warm-up: min(d, (1+n)/(10+n)))",
    )
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=_D.precision,
        help="autocast precision of training and sampling (fp32 measured faster on a 2-core CPU)",
    )
    t.add_argument("--log-every", type=positive_int, default=_D.log_every, help="loss-curve points every K steps")

    c = p.add_argument_group("evaluation classifier (dit train-classifier)")
    c.add_argument(
        "--classifier-epochs", type=positive_int, default=_D.classifier_epochs, help="classifier training epochs"
    )
    c.add_argument("--classifier-width", type=positive_int, default=_D.classifier_width, help="classifier channels")

    s = p.add_argument_group("sampling and evaluation (dit sample, dit eval)")
    s.add_argument(
        "--sampler",
        choices=SAMPLER_NAMES,
        default=_D.sampler,
        help="sampler (see dit sample --help; default: heun for --recipe fast, dpm++2m for --recipe paper)",
    )
    s.add_argument(
        "--num-sampling-steps",
        "--sampling-steps",
        "--sample-steps",
        dest="sampling_steps",
        type=positive_int,
        default=_D.sampling_steps,
        help="sampler steps",
    )
    s.add_argument("--cfg-scale", type=float, default=_D.cfg_scale, help="classifier-free guidance scale")
    s.add_argument(
        "--num-samples",
        type=positive_int,
        default=_D.num_samples,
        help="class-balanced samples for the metrics (the grid is their first rows)",
    )
    s.add_argument(
        "--grid-per-class", type=positive_int, default=_D.grid_per_class, help="grid columns (samples per class)"
    )
    s.add_argument("--strip-class", type=int, default=_D.strip_class, help="digit shown in the denoising strip")
    s.add_argument("--strip-frames", type=positive_int, default=_D.strip_frames, help="frames of the denoising strip")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from dit.cli.main import main
    from dit.demo.pipeline import check_config, format_command, run_demo, stage_commands

    fields = {f.name for f in dataclasses.fields(DemoConfig)}
    cfg = DemoConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if args.dry_run:
        check_config(cfg)
        for argv in stage_commands(cfg).values():
            print(format_command(argv))
        return 0
    run_demo(cfg, run_command=main)
    return 0
