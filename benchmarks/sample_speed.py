"""Sampling speed: seconds per image for DDPM-250, DDIM-50 and DPM-Solver++(2M)-20, with and
without classifier-free guidance and with a guidance interval.

Everything runs through ``dit.sampling.ImageSampler.latents`` — the one sampling
path of ``dit sample``, FID evaluation and the demo — on a randomly initialised model (speed
does not depend on the weights). A forward pre-hook counts the rows the network evaluates, so
the JSON shows directly that the guidance interval drops the unconditional rows outside it.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from benchmarks.common import Stat, interleaved
from benchmarks.train_speed import MODELS, build_dit

# (sampler, steps): the paper's DDPM-250, DDIM-50 and the fast solver at 20 model calls.
SOLVERS: List[Tuple[str, int]] = [("ddpm", 250), ("ddim", 50), ("dpm++2m", 20)]
CFG_SCALE = 4.0
# Guide only the middle of the trajectory (Kynkäänniemi et al. 2024 guide a limited interval).
GUIDANCE_INTERVAL = (100, 600)
GUIDANCE: Dict[str, Tuple[float, Optional[Tuple[int, int]]]] = {
    "none": (1.0, None),
    "cfg": (CFG_SCALE, None),
    "cfg-interval": (CFG_SCALE, GUIDANCE_INTERVAL),
}


def expected_rows(sampler: str, steps: int, guidance: str, batch: int) -> int:
    """Network rows a run should evaluate: one per image and step, plus one per guided step."""
    from dit.diffusion import create_diffusion
    from dit.diffusion.samplers import solver_timesteps
    from dit.diffusion.schedules import space_timesteps

    scale, interval = GUIDANCE[guidance]
    if sampler == "ddpm":
        ts = sorted(space_timesteps(1000, str(steps)))
    elif sampler == "ddim":
        ts = sorted(space_timesteps(1000, f"ddim{steps}"))
    else:
        d = create_diffusion("")
        ts = [int(t) for t in solver_timesteps(d.alphas_cumprod.numpy(), steps)]
    if scale == 1.0:
        guided = 0
    elif interval is None:
        guided = len(ts)
    else:
        guided = sum(int(interval[0] <= t <= interval[1]) for t in ts)
    return batch * (len(ts) + guided)


def build_runs(model_name: str, batch: int, device: torch.device, steps_scale: float = 1.0):
    """Callables (one per sampler × guidance case) and their row counters."""
    from dit.config import GenerationRequest
    from dit.diffusion import create_diffusion
    from dit.sampling import ImageSampler
    from dit.vae import load_codec

    torch.manual_seed(0)
    model = build_dit(MODELS[model_name]).to(device).eval()
    rows = {"n": 0}
    model.register_forward_pre_hook(lambda m, args: rows.__setitem__("n", rows["n"] + args[0].shape[0]))
    diffusion = create_diffusion("")
    codec = load_codec("none")
    num_classes = int(model.num_classes)
    labels = [i % num_classes for i in range(batch)]
    runs: Dict[str, Callable[[], object]] = {}
    meta: Dict[str, dict] = {}
    for sampler, steps in SOLVERS:
        steps = max(2, int(round(steps * steps_scale)))
        for g, (scale, interval) in GUIDANCE.items():
            cfg = GenerationRequest(
                sampler=sampler,
                num_sampling_steps=steps,
                cfg_scale=scale,
                guidance_interval=interval,
                seed=0,
                precision="fp32",
            )
            s = ImageSampler(model, diffusion, codec, cfg, device)
            key = f"{sampler}-{steps}/{g}"
            runs[key] = lambda s=s: s.latents(list(range(batch)), labels)
            meta[key] = {
                "sampler": sampler,
                "steps": steps,
                "guidance": g,
                "cfg_scale": scale,
                "interval": list(interval) if interval else None,
                "expected_rows": expected_rows(sampler, steps, g, batch),
            }
    return runs, meta, rows


def measure_sampling(
    model_name: str,
    batch: int,
    device: torch.device,
    repeats: int,
    steps_scale: float = 1.0,
    log: Callable[[str], None] = print,
    matmul_peak_gflops: Optional[float] = None,
) -> dict:
    """Seconds per image (median, spread) and network rows per image for every case.

    Each case also gets its achieved GFLOP/s (2 × forward MACs per network row, the paper's count)
    and, given the fp32 matmul peak of the same run, its MFU: how close sampling gets to the
    hardware limit, comparable with training's MFU.
    """
    from dit.models.flops import forward_macs

    row_gflop = 2.0 * forward_macs(MODELS[model_name]) / 1e9
    runs, meta, rows = build_runs(model_name, batch, device, steps_scale)
    for key, fn in runs.items():  # one counted run each (also the warm-up)
        rows["n"] = 0
        with torch.inference_mode():
            fn()
        meta[key]["rows"] = rows["n"]

    def timed(fn):
        def run():
            with torch.inference_mode():
                fn()

        return run

    seconds = interleaved({k: timed(f) for k, f in runs.items()}, device, repeats=repeats, warmup=0)
    cases = {}
    for key, m in meta.items():
        per_image = Stat([s / batch for s in seconds[key].samples])
        gflops = Stat([m["rows"] / batch * row_gflop / t for t in per_image.samples])
        mfu = Stat([g / matmul_peak_gflops for g in gflops.samples]) if matmul_peak_gflops else None
        cases[key] = dict(m, seconds_per_image=per_image, rows_per_image=m["rows"] / batch, gflops=gflops, mfu=mfu)
        shown = f"  MFU {100 * mfu.median:5.1f}%" if mfu else ""
        log(f"  {key:<24} {per_image.median:8.4f} s/image  rows/image {m['rows'] / batch:6.0f}{shown}")
    # What the interval saves, per solver: rows and time relative to full guidance.
    savings = {}
    for sampler, _ in SOLVERS:
        full = next(k for k in cases if k.startswith(sampler + "-") and k.endswith("/cfg"))
        part = full.replace("/cfg", "/cfg-interval")
        savings[sampler] = {
            "rows_interval/rows_cfg": cases[part]["rows"] / cases[full]["rows"],
            "time_interval/time_cfg": cases[part]["seconds_per_image"].median / cases[full]["seconds_per_image"].median,
            "rows_match_expected": all(cases[k]["rows"] == cases[k]["expected_rows"] for k in (full, part)),
        }
    return {"model": model_name, "batch": batch, "precision": "fp32", "cases": cases, "interval_savings": savings}
