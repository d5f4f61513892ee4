"""Per-example random streams keyed by (seed, global example index, purpose).

Why: a run's result must not depend on how many processes it is split across. If every
example's noise, timestep, label-dropout coin and flip are drawn from a generator keyed by the
seed and the example's *global* position, rank r of W draws exactly what a single process would
draw for the same examples.

Knows nothing about DiT; pure torch.
"""

from __future__ import annotations

from typing import Sequence

import torch

_MASK64 = (1 << 63) - 1


def stream_seed(seed: int, index: int, purpose: int = 0) -> int:
    """A 63-bit seed for one example's stream, mixed with splitmix64 so nearby keys decorrelate."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9 + int(purpose) * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z ^= z >> 31
    return z & _MASK64


def example_generators(
    seed: int, indices: Sequence[int], purpose: int = 0, device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One ``torch.Generator`` per example, seeded by (seed, global index, purpose)."""
    gens = []
    for i in indices:
        g = torch.Generator(device=device)
        g.manual_seed(stream_seed(seed, int(i), purpose))
        gens.append(g)
    return gens


def _rows(draw, shape, generators, device, dtype) -> torch.Tensor:
    """Stack ``draw(row_shape, generator=g, device=g.device, dtype=dtype)`` for each generator."""
    if shape[0] != len(generators):
        raise ValueError(f"shape[0]={shape[0]} but {len(generators)} generators")
    rows = [draw(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generators]
    out = torch.stack(rows) if rows else torch.empty(tuple(shape), dtype=dtype)
    return out.to(device) if device is not None else out


def randn_rows(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal tensor of ``shape`` whose row i comes from ``generators[i]``.

    ``shape[0]`` must equal ``len(generators)``. Rows are drawn on each generator's device and
    moved to ``device``, so a row's values are the same whatever the batch it sits in.
    """
    return _rows(torch.randn, shape, generators, device, dtype)


def rand_rows(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform [0, 1) counterpart of :func:`randn_rows`."""
    return _rows(torch.rand, shape, generators, device, dtype)


# Purposes: distinct streams for the different random choices of one example.
NOISE, TIMESTEP, LABEL_DROP, FLIP, POSTERIOR, SAMPLE_INIT, SAMPLE_STEP = range(7)
