"""``python -m benchmarks.few_step --out DIR``: sample quality against model calls, fast recipe vs MeanFlow.

Issue 26's questions, on the flat-background digits at 32 px (``export_digits(style="flat")``: the
jittered strokes and pose on a background of exact zeros) with the small-dataset model of
docs/small-data.md (depth 6, width 192, 3 heads, patch 8, batch 32, lr 2e-3):

* how good is a sample of the ``fast`` recipe (flow matching, x-prediction) at 1, 2, 4, 10, 20, 50 and
  100 model calls — with Euler on the uniform grid, and with ``heun-x0`` (Heun whose last step returns
  the network's x̂_0, 2K − 1 calls) on SD3-shifted grids;
* how good is a MeanFlow model (``--objective meanflow``, guidance ω folded into training) trained for
  the same CPU-minutes, at the same numbers of calls (``--sampler meanflow``: K jumps, K calls).

Every sample set is drawn and scored through the commands a user runs: ``dit sample`` (500
class-balanced samples, seed 0) and ``dit eval --features classifier:…`` (class agreement and FID in
the features of a classifier trained on the held-out digits, ``dit train-classifier``); the
background is the median grey level of the samples at the pixels that are 0 in every training
image. Training runs are ``dit train`` with ``--max-steps`` per recipe (equal CPU-minutes are
matched by the reported CPU seconds per step: a MeanFlow step costs about twice a flow step), or
existing run folders (``--fast-ckpt``, ``--meanflow-ckpt``).

Writes ``DIR/few_step.json``, ``DIR/few_step.png`` (class agreement and FID against model calls)
and prints a Markdown table.
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
from benchmarks.time_to_quality import run_dit

CALLS = (1, 2, 4, 10, 20, 50, 100)
MODEL = ["--depth", "6", "--hidden-size", "192", "--num-heads", "3", "--patch-size", "8"]


def settings(model: str, calls: int, shifts: Sequence[float]) -> list[dict]:
    """The sampler settings of one model at ``calls`` model calls (a setting whose calls fall short is kept
    with its real count)."""
    if model == "meanflow":
        return [{"sampler": "meanflow", "steps": calls, "time_shift": 1.0, "calls": calls}]
    rows = [{"sampler": "euler", "steps": calls, "time_shift": 1.0, "calls": calls}]
    if 2 <= calls <= 20:  # Heun: 2K calls (the README's line is Heun 10)
        rows.append({"sampler": "heun", "steps": calls // 2, "time_shift": 1.0, "calls": 2 * (calls // 2)})
    if 3 <= calls <= 20:
        k = (calls + 1) // 2
        rows += [{"sampler": "heun-x0", "steps": k, "time_shift": s, "calls": 2 * k - 1} for s in shifts]
    return rows


def background_mask(train_dir: Path) -> np.ndarray:
    """bool (H, W): the pixels that are exactly 0 in every training image."""
    from dit.evaluation.io import load_images

    images = load_images(train_dir).images  # (N, H, W, 3) uint8
    return images.max(axis=(0, 3)) == 0


def background_grey(samples: Path, mask: np.ndarray) -> float:
    """Median grey level (0..255) of the samples at the background pixels ``mask``."""
    images = np.load(samples)["arr_0"].astype(np.float64).mean(axis=3)  # (N, H, W)
    return float(np.median(images[:, mask]))


def score(args: argparse.Namespace, name: str, ckpt: Path, row: dict, clf: Path, mask: np.ndarray) -> dict:
    """`dit sample` + `dit eval` of one setting → the row with class agreement, FID, background, CPU seconds."""
    tag = f"{name}-{row['sampler']}-{row['steps']}-s{row['time_shift']}"
    samples = args.out / "samples" / f"{tag}.npz"
    samples.parent.mkdir(parents=True, exist_ok=True)
    cfg = 1.0 if name == "meanflow" else args.cfg_scale  # MeanFlow's guidance is in its weights
    argv = ["sample", "--ckpt", str(ckpt), "--num-samples", str(args.num_samples), "--sampler", row["sampler"]]
    argv += ["--num-sampling-steps", str(row["steps"]), "--time-shift", str(row["time_shift"])]
    argv += ["--cfg-scale", str(cfg), "--seed", "0", "--batch-size", "250", "--out", str(samples), "--overwrite"]
    argv += ["--device", "cpu", "--overwrite"]
    start = time.time()
    cpu = run_dit(argv)
    wall = time.time() - start
    result = samples.with_suffix(".eval.json")
    features = ["--features", f"classifier:{clf}", "--overwrite"]
    run_dit(["eval", str(samples), str(args.data / "test"), *features, "--out", str(result)])
    ev = json.loads(result.read_text())
    out = dict(row, model=name, cfg_scale=cfg, class_agreement=float(ev["class_accuracy"]), fid=float(ev["fid"]))
    out.update(background=background_grey(samples, mask), sample_cpu_seconds=cpu, sample_wall_seconds=wall)
    print(json.dumps(out), flush=True)
    return out


def train(args: argparse.Namespace, name: str, steps: int) -> Path:
    """One `dit train` run of the small-dataset model (``fast`` recipe; MeanFlow adds its objective)."""
    run = args.out / name
    argv = ["train", "--recipe", "fast", "--lr", "2e-3", "--data-path", str(args.data / "train"), "--image-size", "32"]
    argv += ["--vae", "none", "--no-flip", *MODEL, "--global-batch-size", "32", "--num-workers", "0"]
    argv += ["--max-steps", str(steps), "--ckpt-every", str(steps), "--precision", "fp32", "--results-dir", str(run)]
    if name == "meanflow":
        argv += ["--objective", "meanflow", "--meanflow-guidance", str(args.meanflow_guidance)]
    cpu = run_dit(argv)
    print(f"{name}: {steps} steps, {cpu:.0f} CPU seconds ({cpu / steps:.3f} per step)", flush=True)
    return sorted((run / "checkpoints").glob("*.pt"))[-1]


def plot(rows: list[dict], out: Path) -> None:
    """Two panels side by side: class agreement and FID against log10 of the model calls, one line a setting."""
    from dit.demo.plots import loss_curve_image
    from dit.sampling.writers import write_png

    xs = sorted({r["calls"] for r in rows})
    panels = []
    for metric, title, log_y in (("class_agreement", "class agreement", False), ("fid", "FID (classifier)", True)):
        series = {}
        for r in rows:
            label = f"{r['model']} {r['sampler']}" + (f" s{r['time_shift']}" if r["time_shift"] != 1.0 else "")
            series.setdefault(label, {})[r["calls"]] = r[metric]
        lines = {k: [v.get(x, float("nan")) for x in xs] for k, v in series.items()}
        x_log = [float(np.log10(x)) for x in xs]
        panels.append(loss_curve_image(x_log, lines, log_y=log_y, title=title, x_label="log10 model calls"))
    write_png(out, np.concatenate(panels, axis=1))


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | sampler | time shift | model calls | class agreement | FID | background grey |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["model"], r["sampler"], r["time_shift"], r["calls"])):
        lines.append(
            f"| {r['model']} | {r['sampler']} | {r['time_shift']} | {r['calls']} | "
            f"{100 * r['class_agreement']:.1f}% | {r['fid']:.1f} | {r['background']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for data, runs, samples and results")
    p.add_argument("--fast-ckpt", type=Path, help="an existing fast-recipe checkpoint (else trained here)")
    p.add_argument("--meanflow-ckpt", type=Path, help="an existing MeanFlow checkpoint (else trained here)")
    p.add_argument("--classifier", type=Path, help="an existing `dit train-classifier` file (else trained here)")
    p.add_argument("--fast-steps", type=int, default=2000, help="training steps of the fast recipe")
    p.add_argument("--meanflow-steps", type=int, default=1000, help="training steps of MeanFlow (~2× a flow step)")
    p.add_argument("--meanflow-guidance", type=float, default=1.5, help="ω folded into MeanFlow's training")
    p.add_argument("--cfg-scale", type=float, default=1.5, help="guidance of the fast recipe's samples")
    p.add_argument("--shifts", type=float, nargs="+", default=[1.0, 0.5], help="heun-x0 grid shifts to try")
    p.add_argument("--calls", type=int, nargs="+", default=list(CALLS), help="model calls per sample")
    p.add_argument("--samplers", nargs="+", help="only these samplers (default: all of each model's)")
    p.add_argument("--models", nargs="+", default=["fast", "meanflow"], help="which models to score")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--classifier-epochs", type=int, default=10)
    args = p.parse_args(argv)
    args.data = args.out / "data"
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    from dit.data.digits import export_digits
    from dit.study.setup import write_real_subset

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    export_digits(args.data, 32, 0.3, 0, style="flat", copies=4)
    clf = args.classifier or args.out / "classifier.safetensors"
    if not clf.is_file():
        argv_clf = ["train-classifier", "--data-path", str(args.data / "test"), "--out", str(clf), "--width", "32"]
        run_dit([*argv_clf, "--epochs", str(args.classifier_epochs), "--device", "cpu"])
    real = args.out / "real_train.npz"
    write_real_subset(args.data / "train", real, args.num_samples, 0)
    real_json = args.out / "real_train.eval.json"
    features = ["--features", f"classifier:{clf}", "--overwrite"]
    run_dit(["eval", str(real), str(args.data / "test"), *features, "--out", str(real_json)])
    real_eval = json.loads(real_json.read_text())
    mask = background_mask(args.data / "train")
    given = {"fast": args.fast_ckpt, "meanflow": args.meanflow_ckpt}
    steps = {"fast": args.fast_steps, "meanflow": args.meanflow_steps}
    ckpts = {name: given[name] or train(args, name, steps[name]) for name in args.models}
    rows = [
        score(args, name, ckpt, row, clf, mask)
        for name, ckpt in ckpts.items()
        for c in args.calls
        for row in settings(name, c, args.shifts)
        if not args.samplers or row["sampler"] in args.samplers
    ]
    result = {
        "schema": SCHEMA_VERSION,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "checkpoints": {k: str(v) for k, v in ckpts.items()},
        "real_vs_real": {"class_agreement": real_eval["class_accuracy"], "fid": real_eval["fid"]},
        "background_pixels": int(mask.sum()),
        "rows": rows,
        "environment": environment(torch.device("cpu")),
    }
    write_json(result, args.out / "few_step.json")
    plot(rows, args.out / "few_step.png")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
