"""`dit demo`: parse flags → DemoConfig → dit.demo.pipeline.run_demo."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_fields, from_args
from dit.config import DemoConfig
from dit.config.demo import RUN

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_fields(p, DemoConfig)
    run_group = next(g for g in p._action_groups if g.title == RUN)
    run_group.add_argument("--dry-run", action="store_true", help="print the commands the demo runs and exit")


def run(args: argparse.Namespace) -> int:
    from dit.cli.main import main
    from dit.demo.pipeline import check_config, format_command, run_demo, stage_commands

    cfg = from_args(DemoConfig, args)
    if args.dry_run:
        check_config(cfg)
        for argv in stage_commands(cfg).values():
            print(format_command(argv))
        return 0
    run_demo(cfg, run_command=main)
    return 0
