"""In memory (the training hooks, the Pipeline): every rank draws its chunks, rank 0 gets all images."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from dit.runtime.distributed import DistInfo
from dit.sampling.image_sampler import ImageSampler
from dit.sampling.labels import chunk_ranges, rank_chunks


# callback(step_index, total_steps, x0_prediction (B, C, h, w)), the step index counted over all batches
StepCallback = Callable[[int, int, torch.Tensor], Any]


def generate_images(
    sampler: ImageSampler,
    labels: Optional[np.ndarray],
    num_samples: int,
    batch_size: int,
    info: DistInfo = DistInfo(),
    progress: bool = False,
    callback: Optional[StepCallback] = None,
) -> Optional[np.ndarray]:
    """uint8 (N, H, W, 3) on rank 0 (None elsewhere), chunks split over ranks as for files.

    ``callback`` runs after every sampler step of this rank's chunks, which run one after another."""
    mine = rank_chunks(chunk_ranges(num_samples, batch_size), info.rank, info.world_size)
    total = len(mine) * sampler.num_steps
    parts = {
        c.start: sampler.images(
            list(c),
            None if labels is None else labels[c.start : c.stop],
            _steps(callback, k * sampler.num_steps, total),
        )
        for k, c in enumerate(progress_bar(mine, progress and info.is_main, "sample"))
    }
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        dist.gather_object(parts, gathered if info.is_main else None, dst=0)
        if not info.is_main:
            return None
        parts = {k: v for p in gathered for k, v in p.items()}
    return np.concatenate([parts[k] for k in sorted(parts)]) if parts else None


def _steps(callback: Optional[StepCallback], offset: int, total: int):
    """The sampler's per-step callback ``(i, t, x, x0)`` of one chunk, as ``callback``'s (offset + i, total, x0)."""
    if callback is None:
        return None
    return lambda i, t, x, x0: callback(offset + i, total, x0)


def progress_bar(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from dit.runtime.progress import progress

    return progress(items, desc=desc, unit="batch")
