"""The hardware limit, measured in the same run: GFLOP/s of a large square ``torch.matmul``.

MFU elsewhere in the suite divides by this measured peak of the same precision (not by a data
sheet), so a slow or shared machine lowers both the model's throughput and its yardstick.
fp32 and bf16 are measured interleaved (see :func:`benchmarks.common.interleaved`).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch

from benchmarks.common import Stat, interleaved, rate

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_fns(device: torch.device, size: int, precisions: Sequence[str] = ("fp32", "bf16")) -> Dict[str, Callable]:
    """One zero-argument callable per precision: an (n×n)·(n×n) matmul on prepared operands."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    fns = {}
    for p in precisions:
        a = torch.randn(size, size, generator=gen).to(device=device, dtype=DTYPES[p])
        b = torch.randn(size, size, generator=gen).to(device=device, dtype=DTYPES[p])
        fns[p] = lambda a=a, b=b: torch.matmul(a, b)
    return fns


def matmul_gflop(size: int) -> float:
    """GFLOP of one (n×n)·(n×n) matmul: 2n³."""
    return 2.0 * size**3 / 1e9


def matmul_peak(
    device: torch.device, size: int = 4096, repeats: int = 5, precisions: Sequence[str] = ("fp32", "bf16")
) -> Dict[str, Stat]:
    """GFLOP/s samples of an (n×n)·(n×n) matmul (2n³ flops) per precision name."""
    # Several calls per sample keep each timed interval well above timer and launch overheads on GPUs.
    calls = 1 if device.type == "cpu" else 10
    seconds = interleaved(
        matmul_fns(device, size, precisions), device, repeats=repeats, warmup=1, calls_per_sample=calls
    )
    return {p: rate(s, matmul_gflop(size)) for p, s in seconds.items()}
