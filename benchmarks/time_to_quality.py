"""``python -m benchmarks.time_to_quality --out DIR``: how much training does each recipe need for good samples?

Issue 12's target: on 32×32 digits (the jittered, MNIST-like rendering of scikit-learn's digits,
:mod:`dit.data.digit_styles`) the ``fast`` recipe reaches ≥ 95% class agreement and a
classifier-feature FID ≤ 2× the real-vs-real FID, and the ``paper`` recipe needs ≥ 5× as long
to get there (same model, data and seeds).

What it does, all through the commands a user runs (:func:`dit.cli.main.main`):

1. exports the digits (``export_digits``: train / held-out split of the originals) and trains the
   evaluation classifier on the held-out split (``dit train-classifier``);
2. scores real training digits against the held-out ones (``dit eval --features classifier:…``):
   the real-vs-real FID the target is relative to;
3. for each recipe, one ``dit train --recipe R`` run of the same custom model, batch, seed and
   budget (``--max-minutes`` / ``--max-steps``), keeping a checkpoint every ``--ckpt-every`` steps;
4. for every checkpoint: ``dit sample`` (class-balanced, guided, the objective's fast sampler:
   DPM-Solver++(2M) for the paper's ε-model, Heun for the flow model, ~20 model evaluations
   each) and ``dit eval`` → class agreement and FID;
5. time to quality: the first checkpoint meeting both targets, in steps, training FLOPs and
   CPU-minutes; the ratio paper/fast (a lower bound — the paper run's whole length — when the
   paper recipe never gets there).

``--data photos`` runs the same on the natural-image benchmark (:mod:`benchmarks.photos`: crops of the
photographs bundled with scikit-image and scikit-learn, one class per photograph), with flips, scored in
Inception features: FID against the held-out crops, and class agreement by a linear probe on Inception
features, whose target is the probe's agreement with real held-out crops minus 15 points.

Cost axes. Training FLOPs = 3 × 2 × forward MACs per image (:func:`dit.models.flops.forward_macs`,
the model each recipe really trains: learned Σ doubles the head) × batch × steps — exact and
independent of the machine. CPU-minutes: the training process's CPU time (user + system, all
threads) spread evenly over its steps (every step costs the same); wall minutes are reported
beside it (on a shared machine they include waiting).

Writes ``DIR/time_to_quality.json`` (every checkpoint's numbers, the verdict, the environment),
a plot (``--plot``, default ``DIR/time_to_quality.png``: class agreement and FID/real-vs-real
against training FLOPs) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from benchmarks.common import SCHEMA_VERSION, environment, write_json

AGREEMENT_TARGET = 0.95
PHOTOS_AGREEMENT_MARGIN = 0.15  # photos: class agreement at most this far below real held-out crops'
FID_RATIO_TARGET = 2.0  # samples' FID at most this multiple of the real-vs-real FID
RATIO_TARGET = 5.0  # paper / fast time to quality
SAMPLERS = {"gaussian": ("dpm++2m", 20), "flow": ("heun", 10)}  # ~20 model evaluations per sample each
RECIPE_OBJECTIVE = {"paper": "gaussian", "fast": "flow"}


def run_dit(argv: Sequence[str]) -> float:
    """Run ``dit ARGV`` through the CLI entry point (as the demo does); returns the CPU seconds it took
    (this process, all threads)."""
    from dit.cli.main import main as dit_main

    before = time.process_time()
    status = dit_main(list(argv))
    if status:
        raise SystemExit(f"dit {argv[0]} failed with exit status {status}")
    return time.process_time() - before


def train_flops_per_step(recipe: str, model: dict, image_size: int, batch: int) -> int:
    """3 × 2 × forward MACs per image × batch: FLOPs of one training step (forward + backward ≈ 3 forwards)."""
    from dit.config import ModelConfig
    from dit.models.flops import forward_macs

    cfg = ModelConfig(
        name=None,
        input_size=image_size,
        in_channels=3,
        num_classes=10,
        learn_sigma=RECIPE_OBJECTIVE[recipe] == "gaussian",
        **model,
    )
    return 6 * forward_macs(cfg) * batch


def meets_target(row: dict, fid_real: float, agreement: float = AGREEMENT_TARGET) -> bool:
    return row["class_agreement"] >= agreement and row["fid"] <= FID_RATIO_TARGET * fid_real


def agreement_target(data: str, real_agreement: Optional[float]) -> float:
    """Digits: 95%. Photos: within ``PHOTOS_AGREEMENT_MARGIN`` of the probe's agreement with real held-out crops
    (the probe itself is imperfect on photos, so a fixed bar would measure the probe, not the samples)."""
    if data == "photos":
        assert real_agreement is not None
        return real_agreement - PHOTOS_AGREEMENT_MARGIN
    return AGREEMENT_TARGET


def time_to_quality(rows: list[dict], fid_real: float, agreement: float = AGREEMENT_TARGET) -> Optional[dict]:
    """The first row (in step order) meeting both targets, or None."""
    for row in sorted(rows, key=lambda r: r["step"]):
        if meets_target(row, fid_real, agreement):
            return row
    return None


def verdict(
    results: dict[str, list[dict]], fid_real: float, key: str = "train_flops", agreement: float = AGREEMENT_TARGET
) -> dict:
    """Time to quality of both recipes and the ratio paper/fast along ``key``.

    The ratio is a lower bound (the paper run's whole length) when the paper recipe never gets there.
    """
    fast = time_to_quality(results.get("fast", []), fid_real, agreement)
    paper = time_to_quality(results.get("paper", []), fid_real, agreement)
    out = {
        "fast": fast and {k: fast[k] for k in ("step", "train_flops", "cpu_minutes", "wall_minutes")},
        "paper": paper and {k: paper[k] for k in ("step", "train_flops", "cpu_minutes", "wall_minutes")},
        "ratio": None,
        "ratio_is_lower_bound": False,
    }
    if fast is not None and paper is not None:
        out["ratio"] = paper[key] / fast[key]
    elif fast is not None and results.get("paper"):
        out["ratio"] = max(r[key] for r in results["paper"]) / fast[key]
        out["ratio_is_lower_bound"] = True
    out["met"] = bool(fast is not None and out["ratio"] is not None and out["ratio"] >= RATIO_TARGET)
    return out


def plot(results: dict[str, list[dict]], fid_real: float, out: Path, agreement: float = AGREEMENT_TARGET) -> None:
    """Two panels side by side: class agreement and FID / real-vs-real against training TFLOPs."""
    from dit.demo.plots import loss_curve_image
    from dit.sampling.writers import write_png

    xs = sorted({r["train_flops"] for rows in results.values() for r in rows})
    panels = []
    for metric, title, log_y in (("class_agreement", "class agreement", False), ("fid", "FID / real-vs-real", True)):
        series = {}
        for recipe, rows in results.items():
            by_x = {r["train_flops"]: r[metric] / (fid_real if metric == "fid" else 1.0) for r in rows}
            series[recipe] = [by_x.get(x, float("nan")) for x in xs]
        series["target"] = [agreement if metric == "class_agreement" else FID_RATIO_TARGET] * len(xs)
        panels.append(
            loss_curve_image([x / 1e12 for x in xs], series, log_y=log_y, title=title, x_label="training TFLOPs")
        )
    write_png(out, np.concatenate(panels, axis=1))


def markdown_table(results: dict[str, list[dict]], fid_real: float, agreement: float = AGREEMENT_TARGET) -> str:
    lines = [
        "| recipe | step | train TFLOPs | CPU-min | wall min | class agreement | FID | FID / real-vs-real |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, rows in results.items():
        for r in sorted(rows, key=lambda r: r["step"]):
            mark = " ✓" if meets_target(r, fid_real, agreement) else ""
            lines.append(
                f"| {recipe} | {r['step']} | {r['train_flops'] / 1e12:.3g} | {r['cpu_minutes']:.1f} | "
                f"{r['wall_minutes']:.1f} | {r['class_agreement']:.1%}{mark} | {r['fid']:.2f} | "
                f"{r['fid'] / fid_real:.2f} |"
            )
    return "\n".join(lines)


def prepare_photos(args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """Cut the photo crops (benchmarks/photos.py) and score real against real in Inception features;
    returns (real-vs-real FID at ``--num-samples``, the probe's agreement with real held-out crops)."""
    from benchmarks import photos

    if not (out / "data" / photos.MANIFEST).is_file():
        photos.build_photos(out / "data", args.image_size, seed=args.seed)
    feats = photos.real_features(out / "data", max(photos.NUM_REAL, args.num_samples), args.seed)
    floor, _ = photos.real_floor(feats, args.num_samples)
    return floor["fid_real_vs_real"], floor["real_agreement"]


def prepare_data(args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    """Export the digits, train the classifier on the held-out split; returns (classifier, real-vs-real FID)."""
    from dit.data.digits import export_digits
    from dit.study.setup import write_real_subset

    export = export_digits(out / "data", args.image_size, 0.3, args.seed, style=args.style, copies=args.copies)
    classifier = out / "classifier.safetensors"
    if not classifier.is_file():
        run_dit(
            [
                "train-classifier",
                "--data-path",
                str(export.test_dir),
                "--out",
                str(classifier),
                "--epochs",
                str(args.classifier_epochs),
                "--width",
                str(args.classifier_width),
                "--seed",
                str(args.seed),
                "--device",
                "cpu",
            ]
        )
    real = out / "real_train.npz"
    write_real_subset(export.train_dir, real, args.num_samples, args.seed)
    run_dit(
        [
            "eval",
            str(real),
            str(export.test_dir),
            "--features",
            f"classifier:{classifier}",
            "--out",
            str(out / "real.eval.json"),
            "--overwrite",
            "--device",
            "cpu",
        ]
    )
    return classifier, float(json.loads((out / "real.eval.json").read_text())["fid"])


def train_recipe(args: argparse.Namespace, recipe: str, out: Path) -> dict:
    """One `dit train --recipe` run; returns its CPU seconds, wall seconds, start time and checkpoints."""
    run = out / recipe
    ckpt_every = args.paper_ckpt_every if recipe == "paper" and args.paper_ckpt_every else args.ckpt_every
    argv = [
        "train",
        "--recipe",
        recipe,
        "--data-path",
        str(out / "data" / "train"),
        "--image-size",
        str(args.image_size),
        "--vae",
        "none",
        *(["--no-flip"] if args.data == "digits" else []),  # a mirrored photo is still its class
        "--depth",
        str(args.depth),
        "--hidden-size",
        str(args.hidden_size),
        "--num-heads",
        str(args.num_heads),
        "--patch-size",
        str(args.patch_size),
        "--global-batch-size",
        str(args.batch_size),
        "--results-dir",
        str(run),
        "--ckpt-every",
        str(ckpt_every),
        "--keep-last",
        "0",
        "--log-every",
        str(min(ckpt_every, 50)),
        "--num-workers",
        "0",
        "--seed",
        str(args.seed),
        "--device",
        "cpu",
    ]
    argv += ["--lr", str(args.fast_lr)] if recipe == "fast" and args.fast_lr else []  # the paper's lr stays its own
    steps = args.paper_max_steps if recipe == "paper" and args.paper_max_steps else args.max_steps
    argv += ["--max-steps", str(steps)] if steps else []
    argv += ["--max-minutes", str(args.max_minutes)] if args.max_minutes else []
    start = time.time()
    cpu = run_dit(argv)
    wall = time.time() - start
    checkpoints = sorted((run / "checkpoints").glob("*.pt"))
    return {"cpu_seconds": cpu, "wall_seconds": wall, "start": start, "checkpoints": checkpoints}


def score_checkpoint(args: argparse.Namespace, recipe: str, ckpt: Path, classifier: Optional[Path], out: Path) -> dict:
    """`dit sample` + `dit eval` (digits) or the Inception FID and probe (photos) → class agreement and FID."""
    sampler, steps = SAMPLERS[RECIPE_OBJECTIVE[recipe]]
    samples = out / recipe / "samples" / f"{ckpt.stem}.npz"
    samples.parent.mkdir(parents=True, exist_ok=True)
    run_dit(
        [
            "sample",
            "--ckpt",
            str(ckpt),
            "--num-samples",
            str(args.num_samples),
            "--sampler",
            sampler,
            "--num-sampling-steps",
            str(steps),
            "--cfg-scale",
            str(args.cfg_scale),
            "--seed",
            str(args.seed),
            "--batch-size",
            "100",
            "--out",
            str(samples),
            "--device",
            "cpu",
            "--overwrite",  # the benchmark's own files: a rerun into the same --out replaces them
        ]
    )
    if classifier is None:
        from benchmarks import photos

        ev = photos.score_samples(out / "data", samples, max(photos.NUM_REAL, args.num_samples), args.seed)
        return {"class_agreement": ev["class_agreement"], "fid": ev["fid"], "sampler": sampler, "sampling_steps": steps}
    result = samples.with_suffix(".eval.json")
    run_dit(
        [
            "eval",
            str(samples),
            str(out / "data" / "test"),
            "--features",
            f"classifier:{classifier}",
            "--out",
            str(result),
            "--device",
            "cpu",
            "--overwrite",
        ]
    )
    ev = json.loads(result.read_text())
    return {
        "class_agreement": float(ev["class_accuracy"]),
        "fid": float(ev["fid"]),
        "sampler": sampler,
        "sampling_steps": steps,
    }


def checkpoint_step(path: Path) -> int:
    return int(path.stem.split(".")[0])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="working folder (data, classifier, runs, samples, results)")
    p.add_argument("--plot", default=None, help="PNG of the curves (default: OUT/time_to_quality.png)")
    p.add_argument(
        "--data",
        choices=["digits", "photos"],
        default="digits",
        help="digits (scored by a small classifier) or photos (benchmarks/photos.py; Inception FID and probe)",
    )
    p.add_argument("--recipes", nargs="+", default=["paper", "fast"], choices=list(RECIPE_OBJECTIVE))
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--style", default="jitter", help="digits style: plain, jitter, jitter-rgb or flat")
    p.add_argument("--copies", type=int, default=4, help="renderings per original digit (jittered styles)")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--num-heads", type=int, default=3)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=None, help="training steps per recipe")
    p.add_argument(
        "--paper-max-steps", type=int, default=None, help="training steps of the paper run (default: --max-steps)"
    )
    p.add_argument("--fast-lr", type=float, default=None, help="the fast recipe's lr (default: the recipe's)")
    p.add_argument("--max-minutes", type=float, default=None, help="training wall minutes per recipe")
    p.add_argument("--ckpt-every", type=int, default=250, help="score a checkpoint every K steps")
    p.add_argument(
        "--paper-ckpt-every", type=int, default=None, help="the paper run's checkpoint spacing (default: --ckpt-every)"
    )
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--classifier-epochs", type=int, default=12)
    p.add_argument("--classifier-width", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.max_steps or args.max_minutes):
        p.error("give --max-steps and/or --max-minutes")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classifier: Optional[Path] = None
    real_agreement = None
    if args.data == "photos":
        fid_real, real_agreement = prepare_photos(args, out)
    else:
        classifier, fid_real = prepare_data(args, out)
    agreement = agreement_target(args.data, real_agreement)
    model = dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads, patch_size=args.patch_size)
    results: dict[str, list[dict]] = {}
    runs = {}
    for recipe in args.recipes:
        run = train_recipe(args, recipe, out)
        flops_step = train_flops_per_step(recipe, model, args.image_size, args.batch_size)
        last = max(checkpoint_step(c) for c in run["checkpoints"])
        runs[recipe] = {
            "steps": last,
            "cpu_seconds": run["cpu_seconds"],
            "wall_seconds": run["wall_seconds"],
            "train_flops_per_step": flops_step,
        }
        rows = []
        for ckpt in run["checkpoints"]:
            step = checkpoint_step(ckpt)
            row = {
                "step": step,
                "train_flops": flops_step * step,
                "cpu_minutes": run["cpu_seconds"] / 60 * step / last,
                "wall_minutes": (ckpt.stat().st_mtime - run["start"]) / 60,
                **score_checkpoint(args, recipe, ckpt, classifier, out),
            }
            rows.append(row)
            print(
                f"{recipe} step {step}: agreement {row['class_agreement']:.1%} FID {row['fid']:.2f} "
                f"(real vs real {fid_real:.2f})",
                flush=True,
            )
        results[recipe] = rows
        result = {
            "schema": SCHEMA_VERSION,
            "environment": environment(torch.device("cpu")),
            "config": vars(args),
            "model": model,
            "fid_real_vs_real": fid_real,
            "real_agreement": real_agreement,
            "targets": {"class_agreement": agreement, "fid_over_real": FID_RATIO_TARGET, "ratio": RATIO_TARGET},
            "runs": runs,
            "results": results,
            "verdict": {
                "train_flops": verdict(results, fid_real, "train_flops", agreement),
                "cpu_minutes": verdict(results, fid_real, "cpu_minutes", agreement),
            },
        }
        write_json(result, out / "time_to_quality.json")  # after each recipe: a long run's first half is kept
    plot(results, fid_real, Path(args.plot) if args.plot else out / "time_to_quality.png", agreement)
    print(markdown_table(results, fid_real, agreement))
    print(json.dumps(result["verdict"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
