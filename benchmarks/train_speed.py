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
- ``official``: the official ``train.py`` step with diffusers' DiT as the stand-in for the official
  model: fp32 eager, ``torch.optim.AdamW`` with torch's default implementation (a per-tensor loop
  on CPU), the official ``update_ema`` loop (``mul_`` + ``add_`` per tensor), ``loss.item()`` every
  step (its running-loss log) and no gradient check.

MFU = 3 × 2 × forward MACs per image (``dit.models.flops.forward_macs``, the paper's count) ×
images/s ÷ the measured matmul peak (GFLOP/s) of the same precision.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
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
    optimizer: str = "foreach"  # AdamW implementation: "foreach", "fused", "for-loop" or "default" (torch's)
    grad_checkpointing: bool = False
    ema: str = "foreach"  # "foreach" (dit.train.ema.EMA) or "loop" (the official update_ema)
    official_step: bool = False  # loss.item() every step and no grad-norm check (the official train.py)
    compile_mode: Optional[str] = None  # torch.compile mode, e.g. "max-autotune" (with compile=True)
    compile_whole: bool = False  # compile the whole model once instead of each block (fewer graph breaks)
    float8: bool = False  # torchao float8 training linears (CUDA, sm89+; GPU check only)

    def describe(self) -> str:
        parts = [self.impl, self.precision, "compile" if self.compile else "eager", f"adamw-{self.optimizer}"]
        if self.ema != "foreach":
            parts.append(f"ema-{self.ema}")
        if self.official_step:
            parts.append("loss.item()")
        if self.compile_mode or self.compile_whole:
            parts.append(f"compile[{'whole' if self.compile_whole else 'blocks'},{self.compile_mode or 'default'}]")
        if self.float8:
            parts.append("float8")
        if self.grad_checkpointing:
            parts.append("ckpt")
        return " ".join(parts)


# The official train.py's step (diffusers' DiT standing in for the official model).
OFFICIAL = dict(impl="diffusers", precision="fp32", compile=False, optimizer="default", ema="loop", official_step=True)


def default_fast(device: torch.device) -> dict:
    """The fast path `dit train` picks on this machine for a non-paper recipe (dit.runtime.hardware),
    with fused AdamW (the trainer's). On this AVX2 CPU: fp32, eager — the paper recipe's path too."""
    from dit.runtime.hardware import resolve_speed

    choice = resolve_speed(device, "auto", None, "fast")
    return dict(precision=choice.precision, compile=choice.compile, optimizer="fused")


def standard_paths(device: torch.device, ablate: bool = False) -> List[PathSpec]:
    """The paths the targets compare: plain fp32 eager, ours (fast), diffusers (same settings), official.

    ``ablate`` adds the variants the default was chosen from (each differs from ``ours`` in one
    setting), so a rerun on other hardware shows whether the choice still holds.
    """
    fast = default_fast(device)
    paths = [
        PathSpec("fp32-eager"),
        PathSpec("ours", **fast),
        PathSpec("diffusers", impl="diffusers", **fast),
        PathSpec("official", **OFFICIAL),
    ]
    if ablate:
        other = "fp32" if fast["precision"] == "bf16" else "bf16"
        paths += [
            PathSpec("ours-eager" if fast["compile"] else "ours-compile", **dict(fast, compile=not fast["compile"])),
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
        # Its label embedders drop labels themselves in train mode (p = 0.1, from the global RNG); the
        # drop_mask above is the one label dropout, as in ours and the official model.
        for m in self.transformer.modules():
            if type(m).__name__ == "LabelEmbedding":
                m.dropout_prob = 0.0

    def forward(self, x, t, y=None, drop_mask=None):
        if drop_mask is not None:
            y = torch.where(drop_mask, torch.full_like(y, self.num_classes), y)  # (N,)
        return self.transformer(x, timestep=t, class_labels=y).sample  # (N, C_out, H, W)


def build_model_for(spec: PathSpec, cfg: ModelConfig) -> nn.Module:
    return DiffusersAdapter(cfg) if spec.impl == "diffusers" else build_dit(cfg)


# ------------------------------------------------------------------------------------------ the step


def make_optimizer(params, kind: str, lr: float = 1e-4) -> torch.optim.Optimizer:
    """DiT's AdamW (lr 1e-4, no weight decay) with the named implementation."""
    flags = {"foreach": dict(foreach=True), "fused": dict(fused=True), "for-loop": dict(foreach=False), "default": {}}[
        kind
    ]
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
    if spec.float8:  # before compilation: the float8 linears are what gets compiled
        from torchao.float8 import convert_to_float8_training

        convert_to_float8_training(
            model, module_filter_fn=lambda m, fqn: m.in_features % 16 == 0 and m.out_features % 16 == 0
        )
    # The trainer's own wrapper applies checkpointing and compilation (keys unchanged).
    custom_compile = spec.compile and (spec.compile_mode is not None or spec.compile_whole)
    compile_here = spec.compile and not custom_compile
    parallelize(model, DistInfo(device=device), grad_checkpointing=spec.grad_checkpointing, compile=compile_here)
    if custom_compile:
        for part in [model] if spec.compile_whole else list(getattr(model, "blocks", [model])):
            part.compile(mode=spec.compile_mode)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, spec.optimizer, lr)
    ema = EMA(model, decay=0.9999)
    ema_update = ema.update if spec.ema == "foreach" else official_ema_update(model, ema)
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
        if spec.official_step:  # official: zero_grad, backward, step, update_ema, running_loss += loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema_update(model)
            loss.item()
            return loss.detach()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"), foreach=True)
        if bool(torch.isfinite(norm).item()):  # the trainer's one host sync per step
            opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(model)
        return loss.detach()

    return TrainPath(spec, model, step, sum(p.numel() for p in params))


def official_ema_update(model: nn.Module, ema) -> Callable[[nn.Module], None]:
    """The official ``update_ema(ema_model, model, decay=0.9999)``: one ``mul_`` + ``add_`` per tensor."""
    shadow = ema.params  # same keys and fp32 tensors as the official EMA model's parameters

    @torch.no_grad()
    def update(m: nn.Module) -> None:
        for name, param in m.named_parameters():
            shadow[name].mul_(0.9999).add_(param.data, alpha=1 - 0.9999)

    return update


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
        used = sorted({s.precision for s in specs})  # the peaks the MFUs divide by (bf16 is slow on AVX2)
        fns.update({f"matmul:{k}": f for k, f in matmul_fns(device, matmul_size, used).items()})
        cpu: Dict[str, Stat] = {}
        first: Dict[str, Stat] = {}
        seconds = interleaved(fns, device, repeats=repeats, warmup=warmup, cpu_out=cpu, warmup_out=first)
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
                "warmup_seconds": first.get(n),  # the first holds compilation (compiled paths)
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
        ratios = {k: v for k, v in ratios.items() if not k.endswith("/ours")}  # ours/X below, not X/ours
        for peer in ("diffusers", "official"):
            if "ours" in rows and peer in rows:
                ratios[f"ours/{peer}"] = ratio(seconds[peer], seconds["ours"])
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


# ------------------------------------------------------------------------------------------ end to end


def make_latent_cache(root: Path, images: int = 128, image_size: int = 64, classes: int = 4) -> tuple:
    """(cache, vae folder): random RGB images in ``classes`` folders through a tiny AutoencoderKL
    (downsample 2, 4 latent channels: 64 px → 32×32×4 latents) and ``dit extract-latents``."""
    from diffusers import AutoencoderKL
    from PIL import Image

    from dit.cli.main import main as dit_main

    root = Path(root)
    vae_dir, data, cache = root / "vae", root / "images", root / "cache"
    if (cache / "dit_latent_cache.json").is_file() and vae_dir.is_dir():
        return cache, vae_dir
    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=image_size,
    ).save_pretrained(vae_dir)
    gen = torch.Generator().manual_seed(0)
    for i in range(images):
        folder = data / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (image_size, image_size, 3), generator=gen, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    argv = ["extract-latents", "--data-path", str(data), "--vae", str(vae_dir), "--image-size", str(image_size)]
    if dit_main([*argv, "--out", str(cache), "--batch-size", "32", "--device", "cpu"]) != 0:
        raise RuntimeError("dit extract-latents failed")
    return cache, vae_dir


def model_flags(cfg: ModelConfig) -> List[str]:
    """The size flags of `dit train` (and of the official loop) for a MODELS entry."""
    if cfg.name is not None:
        return ["--model", cfg.name]
    sizes = dict(depth=cfg.depth, hidden_size=cfg.hidden_size, num_heads=cfg.num_heads, patch_size=cfg.patch_size)
    return [x for k, v in sizes.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def end_to_end_commands(cache: Path, vae: Path, image_size: int, model: str, batch: int, steps: int, log_every: int):
    """name → function(run folder) → argv: `dit train` with its defaults, and the official loop."""
    sizes = model_flags(MODELS[model])
    common = [*sizes, "--global-batch-size", str(batch), "--max-steps", str(steps), "--log-every", str(log_every)]
    return {
        "dit-train": lambda run: [
            *(sys.executable, "-m", "dit", "train", "--data-path", str(cache), "--vae", str(vae)),
            *("--image-size", str(image_size), *common, "--results-dir", str(run)),
        ],
        "official": lambda run: [
            *(sys.executable, "-m", "benchmarks.official_train", "--data-path", str(cache)),
            *(*common, "--results-dir", str(run)),
        ],
    }


def _window_rates(name: str, run: Path, stdout: str) -> List[float]:
    """steps/s of each log window: `dit train`'s metrics.csv, the official loop's JSON lines."""
    if name == "dit-train":
        import csv

        with open(run / "metrics.csv", newline="") as f:
            return [float(row["steps_per_sec"]) for row in csv.DictReader(f)]
    return [json.loads(line)["steps_per_sec"] for line in stdout.splitlines() if line.startswith("{")]


def measure_end_to_end(
    workdir: Path,
    model: str = "DiT-S/2",
    batch: int = 8,
    steps: int = 8,
    log_every: int = 2,
    rounds: int = 3,
    log: Callable[[str], None] = print,
) -> dict:
    """`dit train` as a user runs it (its defaults; data loading, logging and the final checkpoint
    included) against the official loop, each a fresh process on the same latent cache, in
    interleaved rounds (the order alternates). Per run: wall seconds of the whole process, and the
    steady step time = 1 / median steps/s over the log windows after the first (which holds
    start-up and warm-up). Ratios are per round: official / dit-train.
    """
    import resource
    import shutil
    import statistics

    workdir = Path(workdir)
    side = MODELS[model].input_size
    image_size = 2 * (side if isinstance(side, int) else side[0])  # the tiny VAE downsamples by 2
    cache, vae = make_latent_cache(workdir / f"data{image_size}", image_size=image_size)
    commands = end_to_end_commands(cache, vae, image_size, model, batch, steps, log_every)
    names = list(commands)
    wall = {n: Stat() for n in names}
    step = {n: Stat() for n in names}
    cpu = {n: Stat() for n in names}
    for r in range(rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            run = workdir / f"{name}-{r}"
            shutil.rmtree(run, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(commands[name](run), capture_output=True, text=True, timeout=3600)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
            rates = _window_rates(name, run, proc.stdout)
            steady = statistics.median(rates[1:] if len(rates) > 1 else rates)
            wall[name].samples.append(seconds)
            step[name].samples.append(1.0 / steady)
            cpu[name].samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            log(f"  round {r} {name:<9} {seconds:6.1f} s wall, {1.0 / steady:6.2f} s/step steady")
    return {
        "model": model,
        "batch": batch,
        "steps": steps,
        "log_every": log_every,
        "image_size": image_size,
        "latent_shape": [4, image_size // 2, image_size // 2],
        "env_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "commands": {n: " ".join(commands[n](workdir / f"{n}-R")) for n in names},
        "wall_seconds": wall,
        "steady_seconds_per_step": step,
        "cpu_seconds": cpu,
        "images_per_s_steady": {n: rate(step[n], batch) for n in names},
        "speedup_steady": ratio(step["official"], step["dit-train"]),
        "speedup_wall": ratio(wall["official"], wall["dit-train"]),
        "speedup_cpu_time": ratio(cpu["official"], cpu["dit-train"]),
    }


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
