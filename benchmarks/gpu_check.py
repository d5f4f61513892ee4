"""The measuring half of ``benchmarks/gpu_check.sh``: DiT-XL/2 and DiT-B/4 training and XL/2 sampling.

Training runs the suite's common step (``benchmarks.train_speed.build_path``: DiT's loss, fused
AdamW, EMA, the trainer's per-example randomness and finiteness check) on synthetic cached
latents (32×32×4 = 256×256 images) with bf16 autocast, flash SDPA only and torch.compile, batch
64, gradient checkpointing off and on. MFU is measured against the card's bf16 dense peak
(H100/H200 SXM: 989 TFLOP/s) and against a matmul measured in the same run. Sampling draws
XL/2 latents with DDPM-250 and classifier-free guidance through the one sampling path
(``ImageSampler.latents``), VAE decoding excluded. Every case is guarded: an error or the time
budget marks it and the script goes on, so one JSON always comes back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import torch

from benchmarks.common import environment, write_json

# bf16 dense tensor-core peaks (TFLOP/s) by device-name substring; SXM parts (H200 shares H100's).
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}


def card_peak_tflops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756.0
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


@contextlib.contextmanager
def flash_only(device: torch.device):
    """Allow only the flash SDPA kernel (CUDA); a no-op on CPU."""
    if device.type != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        yield


def train_case(
    model: str,
    batch: int,
    device,
    ckpt: bool,
    compile_on: bool,
    precision: str,
    steps: int,
    warmup: int,
    peak_tflops: Optional[float],
    matmul_tflops: Optional[float],
    profile: bool = False,
    **spec_extra,
) -> dict:
    from benchmarks.train_speed import MODELS, PathSpec, build_path, train_flops_per_image

    spec = PathSpec(
        "gpu",
        precision=precision,
        compile=compile_on,
        optimizer="fused" if device.type == "cuda" else "foreach",
        grad_checkpointing=ckpt,
        **spec_extra,
    )
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with flash_only(device):
        path = build_path(spec, MODELS[model], batch, device)
        for _ in range(warmup):
            path.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        warm_s = time.perf_counter() - t0
        times, losses = [], []
        for _ in range(steps):
            s = time.perf_counter()
            loss = path.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - s)
            losses.append(loss)
        breakdown = profile_breakdown(path.step, device) if profile else None
    times.sort()
    med = times[len(times) // 2]
    ips = batch / med
    flops = train_flops_per_image(MODELS[model]) * ips
    out = {
        "model": model,
        "batch": batch,
        "grad_checkpointing": ckpt,
        "compile": compile_on,
        "precision": precision,
        "sdpa": "flash" if device.type == "cuda" else "default",
        "warmup_s": warm_s,
        "step_s_median": med,
        "step_s_min": times[0],
        "step_s_max": times[-1],
        "steps_per_s": 1.0 / med,
        "images_per_s": ips,
        "achieved_tflops": flops / 1e12,
        "mfu_vs_card_peak": flops / 1e12 / peak_tflops if peak_tflops else None,
        "mfu_vs_measured_matmul": flops / 1e12 / matmul_tflops if matmul_tflops else None,
        "final_loss": float(loss),
        "losses": [float(v) for v in losses],  # same seed and data in every case: float8 vs bf16 side by side
        "params": path.num_params,
        "describe": spec.describe(),
    }
    if breakdown is not None:
        out["profile"] = breakdown
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del path
    return out


# Kernel-name patterns → what the time is spent on (first match wins; CUDA kernel names, lower case).
KERNEL_GROUPS = (
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul", "_mm_")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
    ("norm", ("layer_norm", "layernorm", "rms")),
    ("fused elementwise (triton)", ("triton",)),
    ("elementwise (eager)", ("elementwise", "vectorized", "reduce", "copy", "fill")),
)


def profile_breakdown(step, device, steps: int = 3) -> dict:
    """Where a training step's time goes: device-kernel time per group, and the host gap.

    ``host_gap_fraction`` = 1 − (kernel time / wall time): the share of the step in which the
    device has nothing to run (launch-bound or host-bound when large).
    """
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    wall_us = (time.perf_counter() - start) * 1e6
    groups: dict = {}
    top = []
    for ev in prof.key_averages():
        us = ev.self_device_time_total if device.type == "cuda" else ev.self_cpu_time_total
        if us <= 0:
            continue
        name = ev.key.lower()
        group = next((g for g, keys in KERNEL_GROUPS if any(k in name for k in keys)), "other")
        groups[group] = groups.get(group, 0.0) + us
        top.append((us, ev.key[:120]))
    busy = sum(groups.values())
    top.sort(reverse=True)
    return {
        "steps": steps,
        "wall_ms_per_step": wall_us / steps / 1e3,
        "kernel_ms_per_step": busy / steps / 1e3,
        "host_gap_fraction": max(0.0, 1.0 - busy / wall_us) if device.type == "cuda" else None,
        "fraction_of_kernel_time": {g: v / busy for g, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms_per_step": [[k, us / steps / 1e3] for us, k in top[:15]],
    }


def sample_case(model: str, batch: int, steps: int, device, precision: str, compile_on: bool = False) -> dict:
    from benchmarks.train_speed import MODELS, build_dit
    from dit.config import GenerationRequest
    from dit.diffusion import create_diffusion
    from dit.sampling import ImageSampler
    from dit.vae import load_codec

    torch.manual_seed(0)
    net = build_dit(MODELS[model]).to(device).eval()
    if compile_on:
        for block in net.blocks:
            block.compile()
    cfg = GenerationRequest(sampler="ddpm", num_sampling_steps=steps, cfg_scale=1.5, seed=0, precision=precision)
    sampler = ImageSampler(net, create_diffusion(""), load_codec("none"), cfg, device)
    labels = [i % int(net.num_classes) for i in range(batch)]
    with torch.inference_mode():
        sampler.latents(list(range(batch)), labels)  # warm-up (kernels, allocator, compilation at this shape)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        x = sampler.latents(list(range(batch)), labels)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        secs = time.perf_counter() - t0
    return {
        "model": model,
        "sampler": "ddpm",
        "steps": steps,
        "cfg_scale": 1.5,
        "batch": batch,
        "precision": precision,
        "compile": compile_on,
        "seconds": secs,
        "images_per_s": batch / secs,
        "finite": bool(torch.isfinite(x).all()),
        "note": "latents only (VAE decode excluded)",
    }


def matmul_tflops(device, size: int) -> Optional[float]:
    from benchmarks.matmul import matmul_peak

    return matmul_peak(device, size, repeats=3, precisions=("bf16",))["bf16"].median / 1e3


def round2_cases(tiny: bool, big: str, small: str, batch: int, device, peak, mm) -> list:
    """Issue 18's GPU items, cheapest-first within each group so a short budget still answers each."""
    steps, warmup = (2, 1) if tiny else (20, 3)
    on = device.type == "cuda"

    def train(model, b, profile=False, **extra):
        return lambda: train_case(model, b, device, False, on, "bf16", steps, warmup, peak, mm, profile, **extra)

    cases = [
        (f"r2 train {big} bf16 b{batch} + profile", train(big, batch, profile=True)),
        (f"r2 train {small} b{batch}", train(small, batch)),
        (f"r2 train {small} b{4 * batch}", train(small, 4 * batch)),
        (
            f"r2 train {small} b{batch} whole-model reduce-overhead (CUDA graphs)",
            train(small, batch, compile_whole=True, compile_mode="reduce-overhead"),
        ),
        (
            f"r2 train {small} b{4 * batch} whole-model reduce-overhead",
            train(small, 4 * batch, compile_whole=True, compile_mode="reduce-overhead"),
        ),
    ]
    try:
        import torchao.float8  # noqa: F401

        cases.insert(1, (f"r2 train {big} float8 b{batch}", train(big, batch, float8=True)))
    except ImportError:
        cases.insert(1, (f"r2 train {big} float8 b{batch}", _unavailable("torchao is not installed")))
    n, sample_steps = (2, 3) if tiny else (64, 50)
    cases += [
        (
            f"r2 sample {big} ddpm-{sample_steps} cfg bf16 eager",
            lambda: sample_case(big, n, sample_steps, device, "bf16"),
        ),
        (
            f"r2 sample {big} ddpm-{sample_steps} cfg bf16 compile",
            lambda: sample_case(big, n, sample_steps, device, "bf16", compile_on=on),
        ),
        (f"r2 train {small} b{batch} max-autotune (blocks)", train(small, batch, compile_mode="max-autotune")),
    ]
    return cases


def _unavailable(why: str):
    def run():
        raise RuntimeError(why)

    return run


def read_junit(path: Optional[str]) -> Optional[dict]:
    """Counts from pytest's junit XML (tests, failures, errors, skipped)."""
    if not path or not Path(path).exists() or Path(path).stat().st_size == 0:  # pytest did not run
        return None
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    keys = ("tests", "failures", "errors", "skipped")
    counts = {k: int(suite.get(k, 0)) for k in keys}
    counts["failed_names"] = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in suite.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="GPU check: DiT-XL/2 and DiT-B/4 training and XL/2 sampling as one JSON")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="where to run")
    p.add_argument("--tiny", action="store_true", help="tiny model and few steps (a CPU smoke run of the script)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--pytest-xml", default=None, help="junit XML of the cuda-marked tests to fold into the JSON")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip remaining cases after this many seconds")
    p.add_argument(
        "--round2",
        action="store_true",
        help="issue 18's cases instead: XL/2 bf16 MFU with a profile breakdown, torchao float8, DiT-B/4 with "
        "larger batch / CUDA graphs / max-autotune, guided XL/2 sampling eager vs compiled",
    )
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available; run with --device cpu --tiny", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.perf_counter()
    big, small = ("tiny", "tiny") if a.tiny else ("DiT-XL/2", "DiT-B/4")
    batch, steps, warmup = (4, 2, 1) if a.tiny else (64, 10, 3)
    compile_on = device.type == "cuda"
    precision = "bf16"
    result = {
        "env": environment(device),
        "tiny": a.tiny,
        "pytest_cuda": read_junit(a.pytest_xml),
        "cases": {},
        "errors": {},
    }
    peak = card_peak_tflops(device)
    result["card_bf16_peak_tflops"] = peak
    try:
        result["measured_bf16_matmul_tflops"] = mm = matmul_tflops(device, 256 if a.tiny else 8192)
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        result["errors"]["matmul"] = repr(e)
        mm = None
    cases = (
        round2_cases(a.tiny, big, small, batch, device, peak, mm)
        if a.round2
        else [
            (
                f"train {big} ckpt=off",
                lambda: train_case(big, batch, device, False, compile_on, precision, steps, warmup, peak, mm),
            ),
            (
                f"train {big} ckpt=on",
                lambda: train_case(big, batch, device, True, compile_on, precision, steps, warmup, peak, mm),
            ),
            (
                f"train {small}",
                lambda: train_case(small, batch, device, False, compile_on, precision, steps, warmup, peak, mm),
            ),
            (
                f"sample {big} ddpm-250 cfg",
                lambda: sample_case(big, 2 if a.tiny else 64, 5 if a.tiny else 250, device, precision),
            ),
        ]
    )
    for name, run in cases:
        elapsed = time.perf_counter() - started
        if elapsed > a.budget_s:
            result["errors"][name] = f"skipped: time budget {a.budget_s:.0f}s spent ({elapsed:.0f}s)"
            continue
        print(f"[{elapsed:6.1f}s] {name}", flush=True)
        try:
            result["cases"][name] = run()
            print(json.dumps(result["cases"][name]), flush=True)
        except Exception as e:  # noqa: BLE001 - one failing case must not lose the others
            result["errors"][name] = "".join(traceback.format_exception_only(type(e), e)).strip()
            traceback.print_exc()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result["wall_seconds"] = time.perf_counter() - started
        write_json(result, Path(a.out))  # after every case: a kill at the time limit keeps what was measured
    result["wall_seconds"] = time.perf_counter() - started
    write_json(result, Path(a.out))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
