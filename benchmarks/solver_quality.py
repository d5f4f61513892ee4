"""``python -m benchmarks.solver_quality --run DIR``: does the fast solver match DDPM-250's quality?

Issue 8's sampling-quality target: the fast solver (DPM-Solver++(2M)) at <= 25 steps reaches
the FID of DDPM-250 within 10% on the demo model (FID in the demo classifier's features,
against the demo's held-out real digits), i.e. >= 10x fewer model evaluations for the same
quality.

What it does, all through the project's own paths (:class:`dit.sampling.ImageSampler`
+ :func:`generate_images` for sampling, :func:`make_extractor` ``classifier:PATH`` +
:func:`compute_metrics` for the metrics):

* draws the same N class-balanced samples (sample i has class i mod 10, same seed, so the same
  x_T per index) with DDPM-250 and with ``dpm++2m`` and ``ddim`` at 10, 15, 20, 25 steps, at the
  demo's guidance scale;
* draws DDPM-250 a second time with another seed: the difference of the two FIDs is the
  sampling noise of an FID at this N (the verdict is only meaningful when it is well below the
  10% margin);
* counts model evaluations with a forward hook (network calls per sample, and rows per sample:
  guidance doubles the batch) and times every configuration;
* prints a table and writes JSON with the verdict: the smallest fast-solver step count whose FID
  is <= 1.10 x DDPM-250's (same seed).

A ``dit demo`` folder holds ``train/checkpoints/*.pt``, ``classifier.safetensors``,
``data/test`` (the held-out real digits the classifier was trained on and FID compares with)
and ``demo.json`` (the guidance scale, precision and seed the demo sampled with).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from benchmarks.common import SCHEMA_VERSION, environment, table, write_json

TARGET_RATIO = 1.10  # the fast solver's FID may exceed DDPM-250's by at most 10%
FAST_SOLVER = "dpm++2m"
DEFAULT_SOLVERS = ("dpm++2m", "ddim")
DEFAULT_STEPS = (10, 15, 20, 25)
REFERENCE_STEPS = 250


@dataclasses.dataclass
class DemoRun:
    """What the benchmark needs from a ``dit demo`` folder."""

    checkpoint: Path
    classifier: Path
    reference: Path
    cfg_scale: float
    precision: str
    seed: int


def load_demo_run(run_dir: str | Path) -> DemoRun:
    """Checkpoint (the latest in ``train/checkpoints``), classifier, held-out digits and sampling settings."""
    from dit.errors import UserError
    from dit.runtime.checkpoint import latest_checkpoint

    root = Path(run_dir)
    ckpt = latest_checkpoint(root / "train" / "checkpoints")
    if ckpt is None:
        raise UserError(f"{root} has no train/checkpoints/*.pt; pass a finished `dit demo --out` folder")
    classifier = root / "classifier.safetensors"
    reference = root / "data" / "test"
    for p in (classifier, reference):
        if not p.exists():
            raise UserError(f"{p} is missing; pass a finished `dit demo --out` folder")
    config = {}
    if (root / "demo.json").is_file():
        config = json.loads((root / "demo.json").read_text()).get("config", {})
    return DemoRun(
        ckpt,
        classifier,
        reference,
        float(config.get("cfg_scale", 2.0)),
        str(config.get("precision", "fp32")),
        int(config.get("seed", 0)),
    )


class EvalCounter:
    """Counts forward calls of a module and the rows they process (a forward hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.rows = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.calls += 1
        self.rows += int(inputs[0].shape[0])

    def reset(self) -> None:
        self.calls = self.rows = 0

    def close(self) -> None:
        self._handle.remove()


def configurations(solvers: Sequence[str], steps: Sequence[int], seed: int) -> list[dict]:
    """The reference DDPM-250 (seed), its noise twin (seed + 1), then every solver x step count."""
    configs = [
        {"name": f"ddpm-{REFERENCE_STEPS}", "sampler": "ddpm", "steps": REFERENCE_STEPS, "seed": seed},
        {
            "name": f"ddpm-{REFERENCE_STEPS}-seed{seed + 1}",
            "sampler": "ddpm",
            "steps": REFERENCE_STEPS,
            "seed": seed + 1,
        },
    ]
    configs += [{"name": f"{s}-{k}", "sampler": s, "steps": int(k), "seed": seed} for s in solvers for k in steps]
    return configs


def verdict(rows: list[dict], reference_fid: float, solver: str, ratio: float = TARGET_RATIO) -> Optional[int]:
    """The smallest step count of ``solver`` whose FID is <= ``ratio`` x the reference FID (None if none)."""
    ok = [r["steps"] for r in rows if r["sampler"] == solver and r["fid"] <= ratio * reference_fid]
    return min(ok) if ok else None


def measure(
    run: DemoRun,
    num_samples: int,
    solvers: Sequence[str],
    steps: Sequence[int],
    batch_size: int,
    seed: int,
    device: torch.device,
    say=lambda m: print(m, file=sys.stderr, flush=True),
) -> dict:
    """Sample every configuration, evaluate it, and return the JSON-ready result."""
    from dit.config import GenerationRequest, SampleConfig
    from dit.diffusion import build_objective
    from dit.evaluation.evaluate import compute_metrics, reference_features
    from dit.evaluation.features import make_extractor
    from dit.sampling import ImageSampler, generate_images, load_for_sampling, sample_labels

    base = GenerationRequest(cfg_scale=run.cfg_scale, precision=run.precision, seed=seed, batch_size=batch_size)
    loaded = load_for_sampling(SampleConfig(ckpt=str(run.checkpoint), progress=False), device)
    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    extractor = make_extractor(f"classifier:{run.classifier}", device=str(device))
    ref = reference_features(str(run.reference), extractor, cache=False)  # leave the run folder untouched
    counter = EvalCounter(loaded.model)
    rows: list[dict] = []
    try:
        for c in configurations(solvers, steps, seed):
            cfg = dataclasses.replace(base, sampler=c["sampler"], num_sampling_steps=c["steps"], seed=c["seed"])
            sampler = ImageSampler(loaded.model, diffusion, loaded.codec, cfg, device)
            labels = sample_labels(num_samples, sampler.num_classes)
            counter.reset()
            t0 = time.perf_counter()
            images = generate_images(sampler, labels, num_samples, batch_size)  # (N, H, W, 3) uint8
            seconds = time.perf_counter() - t0
            chunks = -(-num_samples // batch_size)
            m = compute_metrics(extractor.features(images), ref, labels)
            row = {
                **c,
                "fid": m["fid"],
                "class_agreement": m["class_accuracy"],
                "precision": m["precision"],
                "recall": m["recall"],
                "model_calls_per_sample": counter.calls / chunks,
                "model_rows_per_sample": counter.rows / num_samples,
                "seconds": seconds,
                "seconds_per_image": seconds / num_samples,
            }
            rows.append(row)
            say(
                f"{c['name']:>18}: FID {row['fid']:.3f}  agreement {row['class_agreement']:.3f}  "
                f"{row['model_calls_per_sample']:.0f} evals  {seconds:.1f}s"
            )
    finally:
        counter.close()

    ddpm, twin, fast = rows[0], rows[1], rows[2:]
    noise = abs(ddpm["fid"] - twin["fid"])
    mean_ddpm = (ddpm["fid"] + twin["fid"]) / 2
    verdicts = {}
    for s in solvers:
        k = verdict(fast, ddpm["fid"], s)
        verdicts[s] = {
            "smallest_steps_within_10pct": k,
            "meets_target": k is not None and k <= 25,
            "evaluation_ratio": (ddpm["model_calls_per_sample"] / k) if k else None,
        }
    for r in fast:
        r["fid_ratio_to_ddpm"] = r["fid"] / ddpm["fid"]
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "solver_quality",
        "target": f"{FAST_SOLVER} at <= 25 steps: FID (classifier features) <= {TARGET_RATIO} x "
        f"DDPM-{REFERENCE_STEPS}'s",
        "run": {
            "checkpoint": str(run.checkpoint),
            "classifier": str(run.classifier),
            "reference": str(run.reference),
            "cfg_scale": run.cfg_scale,
            "precision": run.precision,
        },
        "num_samples": num_samples,
        "num_reference": int(len(ref["pool"])),
        "seed": seed,
        "batch_size": batch_size,
        "labels": "balanced: sample i has class i mod num_classes",
        "rows": rows,
        "ddpm_noise": {
            "fid_seed_a": ddpm["fid"],
            "fid_seed_b": twin["fid"],
            "abs_difference": noise,
            "relative_difference": noise / mean_ddpm if mean_ddpm else None,
            "below_margin": noise / ddpm["fid"] < TARGET_RATIO - 1 if ddpm["fid"] else False,
        },
        "verdict": verdicts,
        "target_met": verdicts.get(FAST_SOLVER, {}).get("meets_target", False),
        "environment": environment(device),
    }


def format_report(result: dict) -> str:
    """The table and verdict lines printed to stdout."""
    ref = result["rows"][0]["fid"]
    body = [
        [
            r["name"],
            f"{r['steps']}",
            f"{r['model_calls_per_sample']:.0f}",
            f"{r['model_rows_per_sample']:.0f}",
            f"{r['fid']:.3f}",
            f"{r['fid'] / ref:.3f}",
            f"{r['class_agreement']:.3f}",
            f"{r['seconds']:.1f}",
        ]
        for r in result["rows"]
    ]
    lines = [
        f"solver quality: N={result['num_samples']} class-balanced samples vs {result['num_reference']} held-out "
        f"digits, cfg {result['run']['cfg_scale']}, seed {result['seed']}",
        table(body, ["config", "steps", "evals/sample", "rows/sample", "FID", "FID/DDPM", "agreement", "wall s"]),
    ]
    n = result["ddpm_noise"]
    lines.append(
        f"FID noise (DDPM-{REFERENCE_STEPS}, two seeds): {n['fid_seed_a']:.3f} vs {n['fid_seed_b']:.3f}, "
        f"|diff| {n['abs_difference']:.3f} ({100 * n['relative_difference']:.1f}% of their mean; margin 10%)"
    )
    for s, v in result["verdict"].items():
        k = v["smallest_steps_within_10pct"]
        lines.append(
            f"verdict {s}: "
            + (
                f"{k} steps reach FID <= 1.10 x DDPM-{REFERENCE_STEPS} "
                f"({v['evaluation_ratio']:.1f}x fewer model evaluations)"
                if k
                else "no tested step count is within 10% of DDPM-250"
            )
        )
    lines.append(f"target ({FAST_SOLVER} <= 25 steps within 10%): {'met' if result['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.solver_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a finished `dit demo --out` folder")
    p.add_argument("--num-samples", type=int, default=1000, help="class-balanced samples per configuration")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="fast-solver step counts")
    p.add_argument("--solvers", nargs="+", default=list(DEFAULT_SOLVERS), help="fast solvers to compare")
    p.add_argument("--batch-size", type=int, default=500, help="samples per generation chunk")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the demo's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--out", default=None, help="write the JSON result here")
    args = p.parse_args(argv)

    from dit.errors import UserError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.num_samples < 4:
            raise UserError(
                f"--num-samples must be at least 4 (precision/recall use 3 neighbours), got {args.num_samples}"
            )
        run = load_demo_run(args.run)
        seed = run.seed if args.seed is None else args.seed
        result = measure(
            run, args.num_samples, args.solvers, args.steps, args.batch_size, seed, torch.device(args.device)
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.out:
        write_json(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
