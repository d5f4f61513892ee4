"""``python -m benchmarks.block_options``: which block options help a small DiT in a short CPU run.

The bundled digits (8×8 by default), the demo's model (depth 4, width 128, 4 heads, patch 2),
the same seed, data order, noise draws and number of steps for every variant; each variant adds
one block option (or all of them) to the paper's block. For each: the last logged training loss,
the class agreement of 300 class-balanced samples (DPM-Solver++ 20 steps, guidance 2) under the
held-out-trained classifier, and their classifier-feature FID against the held-out digits.
Runs ``--jobs`` variants at a time, each single-threaded (the ranking, not the speed, is the
result; CPU seconds per step are recorded to show what an option costs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import table, write_json

VARIANTS = {
    "paper": [],
    "rmsnorm": ["--norm", "rms"],
    "qk-norm": ["--qk-norm", "rms"],
    "swiglu": ["--mlp", "swiglu"],
    "rope": ["--rope"],
    "long-skip": ["--long-skip"],
    "all": ["--norm", "rms", "--qk-norm", "rms", "--mlp", "swiglu", "--rope", "--long-skip"],
}


def dit(argv: list[str], log: Path) -> float:
    """Run ``python -m dit.cli.main ARGV`` single-threaded; returns its CPU seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "a") as f:
        subprocess.run([sys.executable, "-m", "dit.cli.main", *argv], check=True, stdout=f, stderr=f, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # approximate when jobs overlap


def run_variant(name: str, flags: list[str], root: Path, a: argparse.Namespace) -> dict:
    run, log = root / "runs" / name, root / f"{name}.log"
    t0 = time.monotonic()
    dit(
        [
            "train",
            "--data-path",
            str(root / "data" / "train"),
            "--image-size",
            str(a.image_size),
            "--vae",
            "none",
            "--no-flip",
            "--depth",
            "4",
            "--hidden-size",
            "128",
            "--num-heads",
            "4",
            "--patch-size",
            "2",
            "--global-batch-size",
            "32",
            "--results-dir",
            str(run),
            "--max-steps",
            str(a.steps),
            "--ckpt-every",
            str(a.steps),
            "--log-every",
            "50",
            "--lr",
            "1e-3",
            "--warmup-steps",
            "50",
            "--ema-type",
            "halflife",
            "--num-workers",
            "0",
            "--seed",
            str(a.seed),
            *flags,
        ],
        log,
    )
    train_seconds = time.monotonic() - t0
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    samples = root / f"{name}.npz"
    dit(
        [
            "sample",
            "--ckpt",
            str(ckpt),
            "--num-samples",
            "300",
            "--sampler",
            "dpm++2m",
            "--num-sampling-steps",
            "20",
            "--cfg-scale",
            "2",
            "--seed",
            str(a.seed),
            "--batch-size",
            "100",
            "--no-progress",
            "--out",
            str(samples),
        ],
        log,
    )
    out = root / f"{name}.eval.json"
    dit(
        [
            "eval",
            str(samples),
            str(root / "data" / "test"),
            "--features",
            f"classifier:{root / 'classifier.safetensors'}",
            "--out",
            str(out),
        ],
        log,
    )
    ev = json.loads(out.read_text())
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()]  # logged every 50 steps
    header, last = rows[0], rows[-1]
    params = json.loads((run / "run.json").read_text())["config"]["model"]
    return {
        "variant": name,
        "flags": flags,
        "class_agreement": ev["class_accuracy"],
        "fid": ev["fid"],
        "loss": float(last[header.index("loss")]),
        "mse": float(last[header.index("mse")]),
        "train_wall_seconds": round(train_seconds, 1),
        "model": params,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/block_options", help="work folder (data, classifier, runs)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--json", default="benchmarks/results/block_options.json")
    a = p.parse_args(argv)
    from dit.data.digits import export_digits

    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "train").is_dir():
        export_digits(root / "data", a.image_size, 0.3, a.seed)
    if not (root / "classifier.safetensors").is_file():
        dit(
            [
                "train-classifier",
                "--data-path",
                str(root / "data" / "test"),
                "--out",
                str(root / "classifier.safetensors"),
                "--image-size",
                str(a.image_size),
                "--epochs",
                "30",
                "--seed",
                str(a.seed),
            ],
            root / "classifier.log",
        )
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda n: run_variant(n, VARIANTS[n], root, a), a.variants))
    write_json({"steps": a.steps, "image_size": a.image_size, "seed": a.seed, "results": results}, Path(a.json))
    print(
        table(
            [
                [
                    r["variant"],
                    f"{r['class_agreement']:.1%}",
                    f"{r['fid']:.2f}",
                    f"{r['mse']:.4f}",
                    f"{r['train_wall_seconds']:.0f}",
                ]
                for r in results
            ],
            ["variant", "class agreement", "classifier FID", "last mse", "train s"],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
