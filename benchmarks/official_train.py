"""The official DiT ``train.py`` loop on one CPU process, reading a ``dit extract-latents`` cache.

The peer of ``dit train`` in the end-to-end comparison (:func:`benchmarks.train_speed.measure_end_to_end`).
It keeps what the official script does each step — ``torch.optim.AdamW(lr=1e-4, weight_decay=0)``
with torch's default implementation, ``update_ema`` as a per-tensor ``mul_``/``add_`` loop,
``loss.item()`` into the running loss every step, a log line every ``--log-every`` steps, a
``DataLoader(shuffle=True, num_workers=4, drop_last=True)`` — and swaps only what a CPU run
of it cannot have: one process instead of DDP/NCCL, diffusers' ``DiTTransformer2DModel`` as the
stand-in for the official model (same function, see ``tests/unit/test_benchmarks.py``), and the
cached posterior moments instead of encoding images with the VAE (``mean + std · noise``, a
random mirror, as fast-DiT's feature training does). Prints one JSON line per log window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from copy import deepcopy
from pathlib import Path

import torch

from benchmarks.train_speed import DiffusersAdapter
from dit.config import ModelConfig
from dit.data.latent_cache import LatentCacheDataset, read_header
from dit.diffusion import create_diffusion


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float = 0.9999) -> None:
    """The official update_ema, verbatim."""
    ema_params = dict(ema_model.named_parameters())
    for name, param in model.named_parameters():
        ema_params[name].mul_(decay).add_(param.data, alpha=1 - decay)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-path", required=True, help="a dit extract-latents cache")
    p.add_argument("--model", default=None, help="an official size; or all four of the custom size flags")
    for flag in ("--depth", "--hidden-size", "--num-heads", "--patch-size"):
        p.add_argument(flag, type=int, default=None)
    p.add_argument("--global-batch-size", type=int, default=8)
    p.add_argument("--max-steps", type=int, required=True)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=50_000)
    p.add_argument("--num-workers", type=int, default=4, help="the official default")
    p.add_argument("--results-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    header = read_header(args.data_path)
    c, h, w = header["latent_shape"]
    scale = float(header["vae"]["scale_factor"])
    sizes = dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads, patch_size=args.patch_size)
    cfg = ModelConfig(
        name=args.model,
        input_size=h,
        in_channels=c,
        num_classes=int(header["num_classes"]),
        **({} if args.model else sizes),
    )
    model = DiffusersAdapter(cfg)
    ema = deepcopy(model)
    for q in ema.parameters():
        q.requires_grad_(False)
    diffusion = create_diffusion(timestep_respacing="")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    loader = torch.utils.data.DataLoader(
        LatentCacheDataset(args.data_path),
        batch_size=args.global_batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
    )
    update_ema(ema, model, decay=0)
    model.train()
    ema.eval()
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_steps = log_steps = 0
    running_loss = 0.0
    start = time.time()
    while train_steps < args.max_steps:
        for moments, y in loader:
            n = moments.shape[0]
            flip = (torch.rand(n) < 0.5).long()  # (N,) the image's random horizontal flip
            picked = moments[torch.arange(n), flip]  # (N, 2, C, h, w)
            x = (picked[:, 0] + picked[:, 1] * torch.randn_like(picked[:, 0])) * scale  # (N, C, h, w)
            t = torch.randint(0, diffusion.num_timesteps, (n,))  # (N,)
            drop = torch.rand(n) < cfg.class_dropout_prob  # (N,) the official LabelEmbedder's dropout
            loss = diffusion.training_losses(model, x, t, dict(y=y, drop_mask=drop))["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            update_ema(ema, model)
            running_loss += loss.item()
            log_steps += 1
            train_steps += 1
            if train_steps % args.log_every == 0:
                steps_per_sec = log_steps / (time.time() - start)
                line = {"step": train_steps, "loss": running_loss / log_steps, "steps_per_sec": steps_per_sec}
                print(json.dumps(line), flush=True)
                running_loss, log_steps, start = 0.0, 0, time.time()
            if train_steps % args.ckpt_every == 0:
                state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args}
                torch.save(state, out / f"{train_steps:07d}.pt")
            if train_steps >= args.max_steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
