"""bf16 vs fp32 loss curves on a tiny model and real data: does mixed precision change training?

Three runs of the same training step (``benchmarks.train_speed.build_path``) on scikit-learn's
bundled 8×8 handwritten digits (real data, no download): fp32 and bf16 with identical init,
data order, noise and timesteps, and a second fp32 run whose diffusion randomness uses another
seed — the run-to-run noise yardstick. The verdict compares the final-window mean losses:
bf16 is "within noise" when |bf16 − fp32| ≤ max(2 × the standard error of the window mean,
|fp32 seed 1 − fp32 seed 0|).
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Dict

import torch

from benchmarks.train_speed import PathSpec, build_path
from dit.config import ModelConfig

CURVE_MODEL = ModelConfig(
    name=None, input_size=8, in_channels=1, num_classes=10, patch_size=2, hidden_size=64, depth=2, num_heads=2
)


def digits() -> tuple:
    """scikit-learn's 1,797 8×8 digits scaled to [-1, 1]: images (M, 1, 8, 8), labels (M,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # (M, 1, 8, 8) in [-1, 1]
    y = torch.tensor(d.target, dtype=torch.long)  # (M,)
    return x, y


def run_curve(precision: str, seed: int, steps: int, batch: int, device: torch.device, lr: float) -> list:
    """Per-step training losses of one run (model init fixed; ``seed`` drives the diffusion draws)."""
    path = build_path(
        PathSpec(precision, precision=precision), CURVE_MODEL, batch, device, seed=seed, data=digits(), lr=lr
    )
    if seed:  # same initial weights as seed 0: only the noise/timestep/order draws differ
        torch.manual_seed(0)
        init = build_path(PathSpec("init"), CURVE_MODEL, batch, device, seed=0, data=None).model
        path.model.load_state_dict(init.state_dict())
    return [float(path.step()) for _ in range(steps)]


def window_stats(losses: list, window: int) -> tuple:
    """(mean, standard error) of the last ``window`` losses."""
    tail = losses[-window:]
    return statistics.fmean(tail), statistics.stdev(tail) / math.sqrt(len(tail))


def loss_curves(
    steps: int = 300,
    batch: int = 32,
    device: torch.device = torch.device("cpu"),
    lr: float = 1e-3,
    log: Callable[[str], None] = print,
) -> Dict[str, object]:
    """The three curves, final-window statistics and the verdict (written to the suite's JSON)."""
    torch.manual_seed(0)
    curves = {
        "fp32": run_curve("fp32", 0, steps, batch, device, lr),
        "bf16": run_curve("bf16", 0, steps, batch, device, lr),
        "fp32_seed1": run_curve("fp32", 1, steps, batch, device, lr),
    }
    window = max(2, min(100, steps // 3))
    stats = {k: window_stats(v, window) for k, v in curves.items()}
    diff = abs(stats["bf16"][0] - stats["fp32"][0])
    seed_diff = abs(stats["fp32_seed1"][0] - stats["fp32"][0])
    noise = max(2 * stats["fp32"][1], seed_diff)
    paired = [abs(a - b) for a, b in zip(curves["bf16"], curves["fp32"])]
    result = {
        "model": CURVE_MODEL.to_dict(),
        "data": "sklearn load_digits (1797 8x8 images, 10 classes) in [-1, 1]",
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "window": window,
        "first_loss": {k: v[0] for k, v in curves.items()},
        "final_window_mean": {k: s[0] for k, s in stats.items()},
        "final_window_stderr": {k: s[1] for k, s in stats.items()},
        "abs_diff_bf16_fp32": diff,
        "abs_diff_fp32_seeds": seed_diff,
        "noise_threshold": noise,
        "mean_paired_step_abs_diff": statistics.fmean(paired),
        "within_noise": diff <= noise,
        "curves": curves,
    }
    log(
        f"  loss (last {window} steps): fp32 {stats['fp32'][0]:.4f} ± {stats['fp32'][1]:.4f}, "
        f"bf16 {stats['bf16'][0]:.4f}, fp32 seed 1 {stats['fp32_seed1'][0]:.4f}; "
        f"|bf16-fp32| {diff:.4f} vs noise {noise:.4f}: {'within' if diff <= noise else 'OUTSIDE'} noise"
    )
    return result
