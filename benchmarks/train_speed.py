"""Training speed: images/s, MFU and peak memory of several training paths, measured side by side.

Paths (:class:`PathSpec`), all running the *same* step on the same data and randomness — DiT's
loss (L_simple + L_vlb through ``dit.diffusion``), AdamW(lr 1e-4, wd 0), the trainer's
grad-norm finiteness check and an EMA update — and differing only in how it is executed:

- ``fp32-eager``: our model in fp32, eager, with the trainer's foreach AdamW and foreach EMA
  (``dit train --precision fp32`` without ``--compile``): the plain baseline.
- ``ours``: our default fast path (see :data:`DEFAULT_FAST` and the README for how it was
  chosen by measurement on each device type).
- ``diffusers``: diffusers' ``DiTTransformer2DModel`` of the same size under the same loss,
  optimiser, EMA, precision and compilation as ``ours`` — the implementation users would
  otherwise pick.

MFU = 3 × 2 × forward MACs per image (``dit.models.flops.forward_macs``, the paper's count) ×
images/s ÷ the measured matmul peak (GFLOP/s) of the same precision.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from benchmarks.common import Stat, interleaved, rate, ratio, rss_high_water_mb, rss_now_mb
from dit.config import DemoConfig, ModelConfig

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PathSpec:
    """How one training path executes the common step."""

    name: str
    impl: str = "dit"  # "dit" (ours) or "diffusers"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; weights, optimiser and EMA stay fp32)
    compile: bool = False  # torch.compile each transformer block in place
    optimizer: str = "foreach"  # AdamW implementation: "foreach", "fused" or "for-loop"
    grad_checkpointing: bool = False

    def describe(self) -> str:
        parts = [self.impl, self.precision, "compile" if self.compile else "eager", f"adamw-{self.optimizer}"]
        if self.grad_checkpointing:
            parts.append("ckpt")
        return " ".join(parts)


# The fast path per device type, chosen by measurement (benchmarks/README.md has the numbers).
DEFAULT_FAST = {
    "cpu": dict(precision="fp32", compile=True, optimizer="fused"),
    "cuda": dict(precision="bf16", compile=True, optimizer="fused"),
}


def standard_paths(device: torch.device, ablate: bool = False) -> List[PathSpec]:
    """The three paths the targets compare: plain fp32 eager, ours (fast), diffusers (same settings).

    ``ablate`` adds the variants the default was chosen from (each differs from ``ours`` in one
    setting), so a rerun on other hardware shows whether the choice still holds.
    """
    fast = DEFAULT_FAST[device.type]
    paths = [
        PathSpec("fp32-eager"),
        PathSpec("ours", **fast),
        PathSpec("diffusers", impl="diffusers", **fast),
    ]
    if ablate:
        other = "fp32" if fast["precision"] == "bf16" else "bf16"
        paths += [
            PathSpec("ours-eager", **dict(fast, compile=False)),
            PathSpec(f"ours-{other}", **dict(fast, precision=other)),
            PathSpec("ours-foreach", **dict(fast, optimizer="foreach")),
        ]
    return paths


# ------------------------------------------------------------------------------------------ models

_DEMO = DemoConfig()
MODELS: Dict[str, ModelConfig] = {
    "DiT-XL/2": ModelConfig(name="DiT-XL/2", input_size=32, in_channels=4, num_classes=1000),
    "DiT-S/2": ModelConfig(name="DiT-S/2", input_size=32, in_channels=4, num_classes=1000),
    "DiT-B/4": ModelConfig(name="DiT-B/4", input_size=32, in_channels=4, num_classes=1000),
    # The `dit demo` model (read from its config): RGB digits in pixel space, 10 classes.
    "demo-pixel": ModelConfig(
        name=None,
        input_size=_DEMO.image_size,
        in_channels=3,
        num_classes=10,
        patch_size=_DEMO.patch_size,
        hidden_size=_DEMO.hidden_size,
        depth=_DEMO.depth,
        num_heads=_DEMO.num_heads,
    ),
    # Tiny model for --tiny smoke runs and the tests.
    "tiny": ModelConfig(
        name=None, input_size=8, in_channels=4, num_classes=10, patch_size=2, hidden_size=64, depth=2, num_heads=2
    ),
}


def build_dit(cfg: ModelConfig) -> nn.Module:
    from dit.models import build_model

    return build_model(cfg)


class DiffusersAdapter(nn.Module):
    """diffusers' ``DiTTransformer2DModel`` behind our ``model(x, t, y, drop_mask)`` call.

    Dropped labels become the null class (index ``num_classes``) before the call, as ours does;
    the wrapped model is ``self.transformer`` and its blocks ``self.blocks`` (for compile/ckpt).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from diffusers import DiTTransformer2DModel

        from dit.weights.diffusers_keys import config_to_diffusers
        from dit.models.registry import resolve

        self.num_classes = cfg.num_classes
        self.transformer = DiTTransformer2DModel(**config_to_diffusers(resolve(cfg)))
        self.blocks = self.transformer.transformer_blocks

    def forward(self, x, t, y=None, drop_mask=None):
        if drop_mask is not None:
            y = torch.where(drop_mask, torch.full_like(y, self.num_classes), y)  # (N,)
        return self.transformer(x, timestep=t, class_labels=y).sample  # (N, C_out, H, W)


def build_model_for(spec: PathSpec, cfg: ModelConfig) -> nn.Module:
    return DiffusersAdapter(cfg) if spec.impl == "diffusers" else build_dit(cfg)


# ------------------------------------------------------------------------------------------ the step


def make_optimizer(params, kind: str, lr: float = 1e-4) -> torch.optim.Optimizer:
    """DiT's AdamW (lr 1e-4, no weight decay) with the named implementation."""
    flags = {"foreach": dict(foreach=True), "fused": dict(fused=True), "for-loop": dict(foreach=False)}[kind]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.999), **flags)


@dataclass
class TrainPath:
    """A ready-to-run training path: ``step()`` runs one full optimiser step."""

    spec: PathSpec
    model: nn.Module
    step: Callable[[], torch.Tensor]
    num_params: int


def build_path(
    spec: PathSpec,
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    seed: int = 0,
    data: Optional[tuple] = None,
    lr: float = 1e-4,
) -> TrainPath:
    """Model, optimiser, EMA and data for one path; the same seed gives every path the same inputs.

    ``data``: optional (images (M, C, H, W), labels (M,)) to cycle through in a seeded order;
    without it every step sees one fixed batch of synthetic latents (speed does not care).
    """
    from dit.diffusion import create_diffusion
    from dit.models.registry import resolve
    from dit.runtime.distributed import DistInfo
    from dit.train.ema import EMA
    from dit.train.parallelize import parallelize
    from dit.train.schedule import draw_step_randomness

    r = resolve(cfg)
    torch.manual_seed(seed)
    model = build_model_for(spec, r).to(device)
    # The trainer's own wrapper applies checkpointing and compilation (keys unchanged).
    parallelize(model, DistInfo(device=device), grad_checkpointing=spec.grad_checkpointing, compile=spec.compile)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, spec.optimizer, lr)
    ema = EMA(model, decay=0.9999)
    diffusion = create_diffusion("")
    side = r.input_size if isinstance(r.input_size, int) else r.input_size[0]
    shape = (r.in_channels, side, side)
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        x_all = torch.randn(batch, *shape, generator=gen).to(device)  # (N, C, H, W) synthetic cached latents
        y_all = torch.randint(0, r.num_classes, (batch,), generator=gen).to(device)  # (N,)
    else:
        x_all, y_all = data[0].to(device), data[1].to(device)  # (M, C, H, W), (M,)
    order = torch.randperm(x_all.shape[0], generator=gen).to(device)  # (M,) a fixed data order
    amp = PRECISIONS[spec.precision]
    counter = {"step": 0}

    def step() -> torch.Tensor:
        rnd = draw_step_randomness(
            seed, counter["step"], batch, 0, 1, shape, diffusion.num_timesteps, r.class_dropout_prob, False, device
        )
        start = (counter["step"] * batch) % (x_all.shape[0] - batch + 1)
        idx = order[start : start + batch]  # (N,)
        x0, y = x_all[idx], y_all[idx]  # (N, C, H, W), (N,)
        counter["step"] += 1
        ctx = torch.autocast(device_type=device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with ctx:
            losses = diffusion.training_losses(
                model, x0, rnd.t, model_kwargs={"y": y, "drop_mask": rnd.drop_mask}, noise=rnd.noise
            )
        loss = losses["loss"].mean()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"), foreach=True)
        if bool(torch.isfinite(norm).item()):  # the trainer's one host sync per step
            opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
        return loss.detach()

    return TrainPath(spec, model, step, sum(p.numel() for p in params))


# ------------------------------------------------------------------------------------------ measuring


def train_flops_per_image(cfg: ModelConfig) -> float:
    """3 × 2 × forward MACs: forward + backward (≈ 2× forward), 2 flops per multiply-accumulate."""
    from dit.models.flops import forward_macs

    return 6.0 * forward_macs(cfg)


def measure_models(
    model_names: List[str],
    specs: List[PathSpec],
    batch: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    matmul_size: int,
    memory: bool = True,
    log: Callable[[str], None] = print,
) -> Dict[str, dict]:
    """For each model: interleaved step times of every path → images/s, MFU, ratios, peak memory.

    The matmul peak is measured *inside* the same rounds (a large matmul per precision between
    the training steps), so each round's MFU divides by the peak the machine gave in that round.
    """
    from benchmarks.matmul import matmul_fns, matmul_gflop

    out: Dict[str, dict] = {}
    for name in model_names:
        cfg = MODELS[name]
        log(f"training: {name} batch {batch}: building {', '.join(s.name for s in specs)}")
        paths = {s.name: build_path(s, cfg, batch, device) for s in specs}
        fns = {n: p.step for n, p in paths.items()}
        fns.update({f"matmul:{k}": f for k, f in matmul_fns(device, matmul_size).items()})
        cpu: Dict[str, Stat] = {}
        seconds = interleaved(fns, device, repeats=repeats, warmup=warmup, cpu_out=cpu)
        peaks = {
            k.split(":")[1]: rate(v, matmul_gflop(matmul_size)) for k, v in seconds.items() if k.startswith("matmul:")
        }
        flops = train_flops_per_image(cfg)
        rows = {}
        for n, p in paths.items():
            ips = rate(seconds[n], batch)
            peak = peaks[p.spec.precision]
            mfu = Stat([v * flops / 1e9 / pk for v, pk in zip(ips.samples, peak.samples)])
            rows[n] = {
                "spec": dataclasses.asdict(p.spec),
                "describe": p.spec.describe(),
                "params": p.num_params,
                "seconds_per_step": seconds[n],
                "cpu_seconds_per_step": cpu[n],
                "images_per_s": ips,
                "mfu": mfu,
                "matmul_peak_gflops": peak,
                "peak_memory_mb": None,
            }
        del paths
        if memory:
            for s in specs:
                rows[s.name]["peak_memory_mb"] = peak_memory(s, name, batch, device)
        base = seconds[specs[0].name]
        ratios = {f"{n}/{specs[0].name}": ratio(base, seconds[n]) for n in rows if n != specs[0].name}
        if "ours" in rows and "diffusers" in rows:
            ratios["ours/diffusers"] = ratio(seconds["diffusers"], seconds["ours"])
        # The same ratios in process CPU time: the work done, robust to a shared machine's load.
        cpu_ratios = {k: ratio(cpu[k.split("/")[1]], cpu[k.split("/")[0]]) for k in ratios}
        out[name] = {
            "batch": batch,
            "train_gflop_per_image": flops / 1e9,
            "paths": rows,
            "speedups": ratios,
            "speedups_cpu_time": cpu_ratios,
            "matmul_gflops_same_rounds": peaks,
            "matmul_size": matmul_size,
        }
        for n, row in rows.items():
            log(f"  {n:<12} {row['images_per_s'].median:8.3f} img/s  MFU {100 * row['mfu'].median:5.1f}%")
        log("  matmul in the same rounds: " + ", ".join(f"{k} {v.median:.1f} GFLOP/s" for k, v in peaks.items()))
    return out


def peak_memory(spec: PathSpec, model_name: str, batch: int, device: torch.device) -> Optional[float]:
    """Peak memory (MiB) of two training steps of one path.

    CUDA: ``max_memory_allocated`` in this process. CPU: the RSS high-water mark of a fresh
    process (RSS never goes down, so one process per path) minus its RSS before the first step.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        path = build_path(spec, MODELS[model_name], batch, device)
        for _ in range(2):
            path.step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        del path
        torch.cuda.empty_cache()
        return peak
    args = [
        sys.executable,
        "-m",
        "benchmarks.train_speed",
        "--memory-probe",
        json.dumps(dataclasses.asdict(spec)),
        "--model",
        model_name,
        "--batch",
        str(batch),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def _memory_probe_main(argv=None) -> int:
    """Entry of the CPU memory probe subprocess: build one path, run two steps, print JSON."""
    p = argparse.ArgumentParser(description="internal: peak RSS of two training steps of one path")
    p.add_argument("--memory-probe", required=True, help="PathSpec as JSON")
    p.add_argument("--model", required=True, help="a key of MODELS")
    p.add_argument("--batch", type=int, required=True, help="batch size")
    a = p.parse_args(argv)
    spec = PathSpec(**json.loads(a.memory_probe))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    before = rss_now_mb()
    path = build_path(spec, MODELS[a.model], a.batch, torch.device("cpu"))
    for _ in range(2):
        path.step()
    print(json.dumps({"peak_mb": rss_high_water_mb() - before, "rss_before_mb": before}))
    return 0


if __name__ == "__main__":
    sys.exit(_memory_probe_main())
