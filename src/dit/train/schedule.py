"""The pure pieces of training: data order, per-example randomness and the learning-rate schedule.

Determinism: the epoch order is a permutation drawn from (seed, epoch); global batch b of an
epoch is the slice [b·B, (b+1)·B) of it and rank r takes its r-th 1/W part. Every random choice of
an example (noise, t, label-drop coin, flip, posterior sample) comes from a generator keyed by
(seed, slot, purpose) where slot = step·B + position in the global batch, so 1 process and W
processes draw the same numbers, and a resumed run draws what the straight run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch

from dit.config import TrainConfig
from dit.runtime import rng

_EPOCH_ORDER = 101  # rng purpose of the per-epoch permutation (examples use 0..6)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the dataset in ``epoch``: same on every rank and every run with this seed."""
    g = torch.Generator().manual_seed(rng.stream_seed(seed, epoch, _EPOCH_ORDER))
    return torch.randperm(n, generator=g)


def local_batches(perm: torch.Tensor, global_batch: int, rank: int, world: int, start: int = 0) -> Iterator[list[int]]:
    """Rank ``rank``'s share of each full global batch of ``perm``, from batch ``start`` on."""
    local = global_batch // world
    for b in range(start, len(perm) // global_batch):
        chunk = perm[b * global_batch + rank * local : b * global_batch + (rank + 1) * local]
        yield chunk.tolist()


@dataclass
class StepRandomness:
    """One rank's random draws for one step (rows = its local examples)."""

    noise: torch.Tensor  # (n, C, h, w)
    t: torch.Tensor  # (n,) int64 (Gaussian) or float32 in [0, 1] (flow); (n, 2) = (t, r) for meanflow
    drop_mask: torch.Tensor  # (n,) bool
    flip_mask: torch.Tensor  # (n,) bool
    posterior_gens: list[torch.Generator]


def draw_step_randomness(
    seed: int,
    step: int,
    global_batch: int,
    rank: int,
    world: int,
    latent_shape: Sequence[int],
    num_timesteps: int,
    drop_prob: float,
    flip: bool,
    device: torch.device,
    timesteps_from_coins: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> StepRandomness:
    """Per-example draws keyed by (seed, slot, purpose), slot = step·B + global batch position.

    Noise and posterior generators live on ``device`` (on CUDA the draws run there, not on the
    host); the three small choices (t, label-drop coin, flip coin) come from one host stream per
    example. The draws depend on the device type, never on the world size.
    ``timesteps_from_coins`` maps the timestep coins (n,) float64 to t (the objective's
    :func:`dit.diffusion.training_timesteps`); without it t is uniform over 0..T−1 (the paper's).
    """
    local = global_batch // world
    slots = [step * global_batch + rank * local + j for j in range(local)]
    # A map that needs k > 1 time coins (MeanFlow's (t, r)) says so in ``coins``; its extra coins
    # follow the three of every objective in the example's stream.
    k = int(getattr(timesteps_from_coins, "coins", 1))
    coins = rng.rand_rows((local, 2 + k), rng.example_generators(seed, slots, rng.TIMESTEP), dtype=torch.float64)
    if timesteps_from_coins is None:
        t = (coins[:, 0] * num_timesteps).long().clamp_(max=num_timesteps - 1)  # (n,) uniform over 0..T-1
    elif k == 1:
        t = timesteps_from_coins(coins[:, 0])  # (n,) int64 (Gaussian) or float in [0, 1] (flow)
    else:
        t = timesteps_from_coins(torch.cat([coins[:, :1], coins[:, 3:]], dim=1))  # (n, 2): (t, r) for meanflow
    drop = coins[:, 1] < drop_prob  # (n,)
    flip_mask = (coins[:, 2] < 0.5) & flip  # (n,)
    noise = rng.randn_rows((local, *latent_shape), rng.example_generators(seed, slots, rng.NOISE, device))
    return StepRandomness(
        noise=noise,  # (n, C, h, w)
        t=t.to(device, non_blocking=True),
        drop_mask=drop.to(device, non_blocking=True),
        flip_mask=flip_mask.to(device, non_blocking=True),
        posterior_gens=rng.example_generators(seed, slots, rng.POSTERIOR, device),
    )


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """lr at ``step``: linear warm-up over ``warmup_steps``, then constant or cosine to 0 at max_steps."""
    lr = cfg.lr
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        total = max(1, (cfg.max_steps or 1) - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / total)
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr
