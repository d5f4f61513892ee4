"""``python -m benchmarks``: the speed suite. Prints tables and writes one JSON file.

Sections (all measured in one run, so the ratios share the machine's state):
matmul peak (fp32, bf16) → training paths per model (images/s, MFU, memory, ratios) →
sampling (s/image per sampler and guidance mode) → bf16-vs-fp32 loss curves → targets.

Modes: default (the numbers for the README), ``--quick`` (smaller batch, fewer repeats and
sampling steps), ``--tiny`` (a 2-layer model: a smoke run of every code path in seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import SCHEMA_VERSION, environment, fmt_stat, table, write_json

SECTIONS = ("matmul", "train", "e2e", "sample", "curves")


@dataclasses.dataclass
class Plan:
    """Sizes of one mode."""

    matmul_size: int
    matmul_repeats: int
    train_models: tuple
    train_batch: int
    train_repeats: int
    train_warmup: int
    sample_model: str
    sample_batch: int
    sample_repeats: int
    sample_steps_scale: float
    curve_steps: int
    curve_batch: int
    e2e_model: str = "DiT-S/2"
    e2e_steps: int = 8
    e2e_log_every: int = 2


PLANS = {
    "full": Plan(4096, 5, ("DiT-S/2", "DiT-B/4", "demo-pixel"), 32, 5, 2, "demo-pixel", 8, 3, 1.0, 300, 32),
    "quick": Plan(2048, 3, ("DiT-S/2", "DiT-B/4", "demo-pixel"), 8, 3, 2, "demo-pixel", 4, 2, 0.2, 150, 32),
    "tiny": Plan(256, 2, ("tiny",), 4, 2, 1, "tiny", 2, 1, 0.04, 12, 8, e2e_model="tiny", e2e_steps=4),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller batch, fewer repeats and sampling steps (minutes)")
    size.add_argument("--tiny", action="store_true", help="2-layer model, a few steps: checks every path in seconds")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="where to run (default: cuda if present)")
    p.add_argument("--out", default="benchmarks/results/bench.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these sections")
    p.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="torch.compile in the fast paths: auto = the measured default (off with --tiny)",
    )
    p.add_argument("--repeats", type=int, default=None, help="override the number of timed rounds per path")
    p.add_argument("--batch", type=int, default=None, help="override the training batch size")
    p.add_argument("--warmup", type=int, default=None, help="override the number of warm-up rounds")
    p.add_argument("--matmul-size", type=int, default=None, help="override n of the n×n matmul peak")
    p.add_argument("--paths", nargs="+", default=None, help="time only these training paths (e.g. ours official)")
    p.add_argument("--e2e-steps", type=int, default=None, help="steps of each end-to-end run (default: the plan's)")
    p.add_argument("--e2e-log-every", type=int, default=None, help="log window of the end-to-end runs")
    p.add_argument("--models", nargs="+", default=None, help="override the training models (keys of MODELS)")
    p.add_argument(
        "--ablate",
        action="store_true",
        help="also time ours with one setting changed (eager / other precision / foreach AdamW)",
    )
    p.add_argument(
        "--workdir", default="benchmarks/results/e2e", help="latent cache and run folders of the e2e section"
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes (one process per path on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active", "inherit"],
        default="passive",
        help="OpenMP idle threads sleep (passive) or spin (active); spinning makes a shared CPU erratic",
    )
    return p


def ensure_omp_policy(policy: str, argv) -> None:
    """Re-run this command with OMP_WAIT_POLICY set (OpenMP reads it once, when torch loads).

    With the default spin-waiting, a 2-thread run on a machine shared with other jobs loses its
    time slices in barriers: tiny steps became 5-30x slower and erratic here. Passive waiting
    costs microseconds per parallel region on an idle machine.
    """
    if policy == "inherit" or os.environ.get("OMP_WAIT_POLICY", "").lower() == policy or argv is not None:
        return  # called as a function (argv given): never replace the caller's process
    os.environ["OMP_WAIT_POLICY"] = policy.upper()
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    ensure_omp_policy(args.omp_wait_policy, argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    plan = PLANS[mode]
    if args.repeats:
        plan = dataclasses.replace(
            plan, train_repeats=args.repeats, sample_repeats=args.repeats, matmul_repeats=args.repeats
        )
    if args.batch:
        plan = dataclasses.replace(plan, train_batch=args.batch)
    if args.matmul_size:
        plan = dataclasses.replace(plan, matmul_size=args.matmul_size)
    if args.warmup is not None:
        plan = dataclasses.replace(plan, train_warmup=args.warmup)
    if args.e2e_steps:
        plan = dataclasses.replace(plan, e2e_steps=args.e2e_steps)
    if args.e2e_log_every:
        plan = dataclasses.replace(plan, e2e_log_every=args.e2e_log_every)
    if args.models:
        plan = dataclasses.replace(plan, train_models=tuple(args.models))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    compile_on = {"on": True, "off": False, "auto": None}[args.compile]
    if compile_on is None and mode == "tiny":
        compile_on = False
    started = time.time()
    result = {"schema": SCHEMA_VERSION, "mode": mode, "plan": dataclasses.asdict(plan), "env": environment(device)}
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    from benchmarks import train_speed

    if "matmul" in args.only:
        from benchmarks.matmul import matmul_peak

        log(f"matmul peak: {plan.matmul_size}x{plan.matmul_size}, {plan.matmul_repeats} rounds")
        stats = matmul_peak(device, plan.matmul_size, plan.matmul_repeats)
        result["matmul_gflops"] = stats
        log(table([[k, fmt_stat(v, ".1f")] for k, v in stats.items()], ["precision", "GFLOP/s median [min-max]"]))

    if "train" in args.only:
        specs = train_speed.standard_paths(device, ablate=args.ablate)
        if args.paths:
            specs = [s for s in specs if s.name in args.paths]
        fixed = ("fp32-eager", "ours-eager", "ours-compile", "official")  # their compilation is their point
        if compile_on is not None:
            specs = [dataclasses.replace(s, compile=compile_on) if s.name not in fixed else s for s in specs]
        result["train"] = train_speed.measure_models(
            list(plan.train_models),
            specs,
            plan.train_batch,
            device,
            plan.train_repeats,
            plan.train_warmup,
            plan.matmul_size,
            memory=not args.no_memory,
            log=log,
        )
        result["train_paths"] = {s.name: s.describe() for s in specs}
        log(train_table(result["train"]))

    if "e2e" in args.only:
        log(f"end to end: `dit train` vs the official loop, {plan.e2e_model} batch {plan.train_batch}")
        result["e2e"] = train_speed.measure_end_to_end(
            Path(args.workdir),
            model=plan.e2e_model,
            batch=plan.train_batch,
            steps=plan.e2e_steps,
            log_every=plan.e2e_log_every,
            rounds=plan.train_repeats,
            log=log,
        )
        e = result["e2e"]
        steady, whole = fmt_stat(e["speedup_steady"]), fmt_stat(e["speedup_wall"])
        log(f"  dit train / official: steady {steady}x, whole run {whole}x")

    if "sample" in args.only:
        from benchmarks.sample_speed import measure_sampling

        log(f"sampling: {plan.sample_model}, batch {plan.sample_batch}")
        result["sample"] = measure_sampling(
            plan.sample_model,
            plan.sample_batch,
            device,
            plan.sample_repeats,
            plan.sample_steps_scale,
            log=log,
            matmul_peak_gflops=result["matmul_gflops"]["fp32"].median if "matmul_gflops" in result else None,
        )

    if "curves" in args.only:
        from benchmarks.loss_curves import loss_curves

        log(f"loss curves: {plan.curve_steps} steps, batch {plan.curve_batch}")
        result["loss_curves"] = loss_curves(plan.curve_steps, plan.curve_batch, device, log=log)

    result["targets"] = targets(result, device)
    result["wall_seconds"] = time.time() - started
    log(
        table(
            [[t["target"], t["measured"], "met" if t["met"] else "NOT met"] for t in result["targets"]],
            ["target", "measured", "verdict"],
        )
    )
    write_json(result, Path(args.out))
    log(f"wrote {args.out}")
    return 0


def train_table(train: dict) -> str:
    rows = []
    for model, r in train.items():
        for name, p in r["paths"].items():
            mfu = p["mfu"]
            rows.append(
                [
                    model,
                    name,
                    p["describe"],
                    fmt_stat(p["images_per_s"]),
                    f"{100 * mfu.median:.1f}%" if mfu else "-",
                    f"{p['peak_memory_mb']:.0f}" if p.get("peak_memory_mb") is not None else "-",
                ]
            )
        for k, s in r["speedups"].items():
            rows.append([model, k, "speed-up, wall (per-round ratio)", fmt_stat(s), "", ""])
        for k, s in r.get("speedups_cpu_time", {}).items():
            rows.append([model, k, "speed-up, CPU time", fmt_stat(s), "", ""])
    return table(rows, ["model", "path", "how", "images/s median [min-max]", "MFU", "peak MiB"])


def targets(result: dict, device: torch.device) -> list:
    """The issue's targets as verdicts (only those whose sections ran)."""
    out = []
    train = result.get("train", {})
    for model, r in train.items():
        s, c = r["speedups"], r.get("speedups_cpu_time", {})
        for key, goal, what in (
            ("ours/fp32-eager", 3.0, "fp32 eager"),
            ("ours/diffusers", 1.25, "diffusers (same settings)"),
            ("ours/official", 1.25, "the official step (diffusers' DiT as its model)"),
        ):
            if key in s:
                v = s[key].median
                cpu = f" ({c[key].median:.2f}x in CPU time)" if key in c else ""
                out.append(
                    {
                        "target": f"{model}: ours >= {goal:g}x {what}",
                        "measured": f"{v:.2f}x wall{cpu}",
                        "met": v >= goal,
                        "value": v,
                        "value_cpu_time": c[key].median if key in c else None,
                    }
                )
    from benchmarks.common import Stat
    from benchmarks.train_speed import MODELS, train_flops_per_image

    for model in [m for m in ("DiT-B/4", "tiny") if m in train][:1]:
        ours, peaks = train[model]["paths"].get("ours"), train[model]["matmul_gflops_same_rounds"]
        if ours and {"bf16", "fp32"} <= set(peaks):
            # The hardware limit is the faster precision's matmul in each round (bf16 is not always faster).
            gflops = Stat([v * train_flops_per_image(MODELS[model]) / 1e9 for v in ours["images_per_s"].samples])
            best = [max(a, b) for a, b in zip(peaks["bf16"].samples, peaks["fp32"].samples)]
            v = Stat([g / p for g, p in zip(gflops.samples, best)]).median
            v_bf16 = Stat([g / p for g, p in zip(gflops.samples, peaks["bf16"].samples)]).median
            out.append(
                {
                    "target": f"{model}: ours MFU >= 50% of the best matmul peak (bf16 or fp32, same rounds)",
                    "measured": f"{100 * v:.1f}% ({gflops.median:.1f} GFLOP/s; bf16 peak "
                    f"{peaks['bf16'].median:.1f}, fp32 peak {peaks['fp32'].median:.1f}; "
                    f"{100 * v_bf16:.0f}% of bf16 peak)",
                    "met": v >= 0.5,
                    "value": v,
                    "value_vs_bf16_peak": v_bf16,
                }
            )
    e2e = result.get("e2e")
    if e2e:
        v = e2e["speedup_steady"].median
        out.append(
            {
                "target": f"{e2e['model']}: `dit train` >= 1.25x the official loop, end to end",
                "measured": f"{v:.2f}x steady step, {e2e['speedup_wall'].median:.2f}x whole run (wall)",
                "met": v >= 1.25,
                "value": v,
            }
        )
    curves = result.get("loss_curves")
    if curves:
        out.append(
            {
                "target": "bf16 loss curve within noise of fp32",
                "measured": f"|diff| {curves['abs_diff_bf16_fp32']:.4f} vs noise {curves['noise_threshold']:.4f}",
                "met": bool(curves["within_noise"]),
                "value": curves["abs_diff_bf16_fp32"],
            }
        )
    sample = result.get("sample")
    if sample:
        sv = sample["interval_savings"]
        ok = all(v["rows_interval/rows_cfg"] < 1.0 and v["rows_match_expected"] for v in sv.values())
        measured = ", ".join(
            f"{k}: rows x{v['rows_interval/rows_cfg']:.2f} time x{v['time_interval/time_cfg']:.2f}"
            for k, v in sv.items()
        )
        out.append({"target": "guidance interval saves the unconditional rows", "measured": measured, "met": ok})
    return out


if __name__ == "__main__":
    sys.exit(main())
