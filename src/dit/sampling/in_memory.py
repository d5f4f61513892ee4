"""In memory (the training hooks): every rank draws its chunks, rank 0 gets all images."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch.distributed as dist

from dit.runtime.distributed import DistInfo
from dit.sampling.image_sampler import ImageSampler
from dit.sampling.labels import chunk_ranges, rank_chunks


def generate_images(
    sampler: ImageSampler,
    labels: Optional[np.ndarray],
    num_samples: int,
    batch_size: int,
    info: DistInfo = DistInfo(),
    progress: bool = False,
) -> Optional[np.ndarray]:
    """uint8 (N, H, W, 3) on rank 0 (None elsewhere), chunks split over ranks as for files."""
    mine = rank_chunks(chunk_ranges(num_samples, batch_size), info.rank, info.world_size)
    parts = {
        c.start: sampler.images(list(c), None if labels is None else labels[c.start : c.stop])
        for c in progress_bar(mine, progress and info.is_main, "sample")
    }
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        dist.gather_object(parts, gathered if info.is_main else None, dst=0)
        if not info.is_main:
            return None
        parts = {k: v for p in gathered for k, v in p.items()}
    return np.concatenate([parts[k] for k in sorted(parts)]) if parts else None


def progress_bar(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from dit.runtime.progress import progress

    return progress(items, desc=desc, unit="batch")
