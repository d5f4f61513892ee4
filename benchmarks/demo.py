"""``python -m benchmarks.demo``: the full `dit demo` against its targets, and its precision choice.

1. Precision (``--precision-steps N``, 0 to skip): `dit train` of the demo model for N steps in
   fp32 and in bf16 autocast from the same seed on the exported digits, in this process, for the
   mean loss over the second half of the run (are the two losses equivalent?); and the step time
   of both, measured interleaved in rounds (:func:`step_speed`), wall and CPU seconds (CPU time
   is the honest figure on a shared machine), which decides ``faster``.
2. The demo (``--skip-demo`` to skip): ``dit demo`` with its defaults (plus any extra flags after
   ``--``) as a child process; records wall time, CPU time, the machine's load average, the
   stages' seconds and the headline numbers from ``metrics.json``, and checks the issue's
   targets: ≤ 10 minutes on 2 CPU cores, classifier ≥ 97% on real digits, class agreement ≥ 90%.

Everything goes to one JSON (``--json``, default ``benchmarks/results/demo.json``).
Wall time only means something on an otherwise idle machine: compare ``cpu_seconds`` /
``cpu_count`` with ``wall_seconds`` and look at ``load_average`` before trusting it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import environment, write_json

TARGETS = {"wall_seconds_max": 600.0, "classifier_accuracy_min": 0.97, "class_agreement_min": 0.90}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_dit(argv: list[str]) -> dict:
    """Run ``python -m dit.cli.main ARGV`` as a child; wall and CPU seconds, load before/after."""
    load_before, cpu0, t0 = os.getloadavg(), _child_cpu(), time.monotonic()
    subprocess.run([sys.executable, "-m", "dit.cli.main", *argv], check=True)
    return {
        "wall_seconds": round(time.monotonic() - t0, 1),
        "cpu_seconds": round(_child_cpu() - cpu0, 1),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def run_dit_here(argv: list[str]) -> dict:
    """Run a `dit` sub-command in this process (imports already paid): wall and CPU seconds of the work."""
    from dit.cli.main import main

    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    if main(argv) != 0:
        raise SystemExit(f"dit {argv[0]} failed")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_seconds": round(time.monotonic() - t0, 1),
        "cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
    }


def _loss_rows(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def step_speed(repeats: int = 7, steps_per_sample: int = 10) -> dict:
    """Seconds per training step of the demo model, fp32 vs bf16 autocast, measured interleaved.

    The step is the trainer's: L_simple + L_vlb, backward, AdamW. Rounds alternate the two paths
    so foreign load hits both; per-round ratios give the comparison.
    """
    import contextlib

    from benchmarks.common import interleaved, ratio
    from dit.config import DemoConfig, ModelConfig
    from dit.diffusion import create_diffusion
    from dit.models import build_model

    cfg = DemoConfig()
    mc = ModelConfig(
        name=None,
        input_size=cfg.image_size,
        in_channels=3,
        num_classes=10,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
    )
    torch.manual_seed(0)
    diffusion = create_diffusion("")
    x = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size) * 2 - 1  # (B, 3, S, S)
    y = torch.randint(0, 10, (cfg.batch_size,))

    def make_step(dtype):
        model = build_model(mc).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, foreach=True)

        def step():
            t = torch.randint(0, diffusion.num_timesteps, (cfg.batch_size,))
            ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with ctx:
                loss = diffusion.training_losses(model, x, t, model_kwargs={"y": y})["loss"].mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    cpu: dict = {}
    wall = interleaved(
        {"fp32": make_step(None), "bf16": make_step(torch.bfloat16)},
        torch.device("cpu"),
        repeats=repeats,
        warmup=2,
        calls_per_sample=steps_per_sample,
        cpu_out=cpu,
    )
    return {
        "batch_size": cfg.batch_size,
        "wall_seconds_per_step": {k: v.to_dict() for k, v in wall.items()},
        "cpu_seconds_per_step": {k: v.to_dict() for k, v in cpu.items()},
        "bf16_over_fp32_wall": ratio(wall["bf16"], wall["fp32"]).to_dict(),
        "bf16_over_fp32_cpu": ratio(cpu["bf16"], cpu["fp32"]).to_dict(),
    }


def precision_check(steps: int, work: Path) -> dict:
    """fp32 vs bf16 autocast for the demo model through `dit train`: CPU s/step and late-run loss."""
    from dit.config import DemoConfig
    from dit.data.digits import export_digits
    from dit.demo.pipeline import stage_commands

    import dit.train.trainer  # noqa: F401  (imports outside the timed region)

    base = DemoConfig(out=str(work / "precision"))
    export_digits(Path(base.out) / "data", base.image_size, base.held_out_fraction, base.seed)
    out = {"steps": steps, "torch_threads": torch.get_num_threads()}
    for precision in ("fp32", "bf16"):
        cfg = DemoConfig(
            out=base.out, precision=precision, max_steps=steps, max_minutes=None, log_every=max(1, steps // 10)
        )
        argv = stage_commands(cfg)["train"]
        run_dir = Path(cfg.out) / f"train-{precision}"
        argv[argv.index("--results-dir") + 1] = str(run_dir)
        timing = run_dit_here(argv)
        rows = _loss_rows(run_dir)
        late = [float(r["loss"]) for r in rows[len(rows) // 2 :]]
        out[precision] = {
            **timing,
            "cpu_seconds_per_step": round(timing["cpu_seconds"] / steps, 4),
            "late_mean_loss": sum(late) / len(late),
            "final_loss": float(rows[-1]["loss"]),
        }
    f32, b16 = out["fp32"], out["bf16"]
    out["late_loss_relative_gap"] = round(abs(b16["late_mean_loss"] - f32["late_mean_loss"]) / f32["late_mean_loss"], 4)
    out["speed"] = step_speed()
    out["faster"] = "bf16" if out["speed"]["bf16_over_fp32_cpu"]["median"] < 1 else "fp32"
    return out


def demo(work: Path, extra: list[str]) -> dict:
    run_dir = work / "demo"
    timing = run_dit(["demo", "--out", str(run_dir), *extra])
    m = json.loads((run_dir / "metrics.json").read_text())
    result = {
        **timing,
        "flags": extra,
        "run_dir": str(run_dir),
        "class_agreement": m["class_agreement"],
        "fid": m["fid"],
        "fid_real_vs_real": m["fid_real_vs_real"],
        "classifier_test_accuracy": m["classifier"]["test_accuracy"],
        "train_steps": m["train"]["steps"],
        "final_loss": m["train"].get("loss"),
        "stage_seconds": m["seconds"],
        "samples": m["samples"],
        "real_vs_real": m["real_vs_real"],
        "per_class_agreement": m["per_class_agreement"],
    }
    result["targets"] = {
        "wall_seconds_ok": timing["wall_seconds"] <= TARGETS["wall_seconds_max"],
        "classifier_ok": m["classifier"]["test_accuracy"] >= TARGETS["classifier_accuracy_min"],
        "class_agreement_ok": m["class_agreement"] >= TARGETS["class_agreement_min"],
        **TARGETS,
    }
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--json", default="benchmarks/results/demo.json", help="result file")
    p.add_argument("--work", default=None, help="folder for the runs (default: a new temporary folder)")
    p.add_argument("--precision-steps", type=int, default=100, help="steps of each precision run (0 skips the check)")
    p.add_argument("--skip-demo", action="store_true", help="only the precision check")
    p.add_argument("extra", nargs="*", help="flags passed on to `dit demo` (after --)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="dit-demo-bench-"))
    result = {"benchmark": "demo", "environment": environment(torch.device("cpu"))}
    if args.precision_steps > 0:
        result["precision"] = precision_check(args.precision_steps, work)
        print(json.dumps(result["precision"], indent=2))
    if not args.skip_demo:
        result["demo"] = demo(work, args.extra)
        d = result["demo"]
        print(
            f"demo: {d['wall_seconds'] / 60:.1f} min wall, {d['cpu_seconds'] / 60:.1f} min CPU, "
            f"class agreement {d['class_agreement']:.1%}, classifier {d['classifier_test_accuracy']:.1%}, "
            f"FID {d['fid']:.3f} (real vs real {d['fid_real_vs_real']:.3f}); targets {d['targets']}"
        )
    write_json(result, Path(args.json))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
