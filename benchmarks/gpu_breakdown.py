"""Where a training step's time goes on a GPU: per-example RNG draws, forward+backward, the
optimiser, EMA, and the one host sync. ``python -m benchmarks.gpu_breakdown [--model DiT-XL/2]``.

Each component is timed alone (synchronised before and after), median of several runs, so the
sum can be compared with the full step that ``benchmarks.gpu_check`` measures.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def timed(fn, device, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        s = time.perf_counter()
        fn()
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        times.append(time.perf_counter() - s)
    times.sort()
    return times[len(times) // 2]


def breakdown(model_name: str, batch: int, device: torch.device, compile_on: bool) -> dict:
    from benchmarks.gpu_check import flash_only
    from benchmarks.train_speed import MODELS, build_model_for, PathSpec, train_flops_per_image
    from dit.diffusion import create_diffusion
    from dit.models.registry import resolve
    from dit.runtime.distributed import DistInfo
    from dit.train.ema import EMA
    from dit.train.parallelize import parallelize
    from dit.train.schedule import draw_step_randomness

    spec = PathSpec("gpu", precision="bf16", compile=compile_on, optimizer="fused")
    r = resolve(MODELS[model_name])
    model = build_model_for(spec, r).to(device)
    parallelize(model, DistInfo(device=device), compile=compile_on)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=device.type == "cuda")
    ema = EMA(model, decay=0.9999)
    diffusion = create_diffusion("")
    shape = (
        (r.in_channels, r.input_size, r.input_size) if isinstance(r.input_size, int) else (r.in_channels, *r.input_size)
    )
    x0 = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, r.num_classes, (batch,), device=device)
    step = {"n": 0}

    def rng():
        step["n"] += 1
        return draw_step_randomness(0, step["n"], batch, 0, 1, shape, 1000, 0.1, False, device)

    rnd = rng()

    def fwd_bwd():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            losses = diffusion.training_losses(
                model, x0, rnd.t, model_kwargs={"y": y, "drop_mask": rnd.drop_mask}, noise=rnd.noise
            )
        losses["loss"].mean().backward()

    def grad_norm_sync():
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"), foreach=True)
        return bool(torch.isfinite(norm).item())

    def full():
        nonlocal rnd
        rnd = rng()
        fwd_bwd()
        if grad_norm_sync():
            opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)

    def plain_randn():
        torch.randn(batch, *shape, device=device)
        torch.randint(0, 1000, (batch,), device=device)

    with flash_only(device):
        for _ in range(4):
            full()
        out = {
            "model": model_name,
            "batch": batch,
            "compile": compile_on,
            "full_step_s": timed(full, device),
            "rng_per_example_s": timed(rng, device),
            "rng_plain_randn_s": timed(plain_randn, device),
            "fwd_bwd_s": timed(fwd_bwd, device),
            "grad_norm_sync_s": timed(grad_norm_sync, device),
            "optimizer_s": timed(opt.step, device),
            "ema_s": timed(lambda: ema.update(model), device),
        }
    flops = train_flops_per_image(MODELS[model_name]) * batch
    out["fwd_bwd_tflops"] = flops / out["fwd_bwd_s"] / 1e12
    out["full_step_tflops"] = flops / out["full_step_s"] / 1e12
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["DiT-XL/2", "DiT-B/4"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = []
    for name in args.models:
        res = breakdown(name, args.batch, device, not args.no_compile)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
