"""Which labels and which chunks: the pure bookkeeping of a draw.

Sample i has label ``class_labels[i mod len]`` (or ``i mod num_classes``, balanced). Work is cut into
*chunks* of ``batch_size`` consecutive global indices; chunk k runs on rank k mod W, so a chunk's
batch is the same whatever the number of processes (see :mod:`dit.sampling.to_file`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from dit.errors import UserError

DEFAULT_NUM_SAMPLES = 16


def sample_labels(
    num_samples: int, num_classes: int, class_labels: Optional[Sequence[int]] = None
) -> Optional[np.ndarray]:
    """Label of every sample (N,) int64, or None for an unconditional model.

    Given ``class_labels``, sample i gets ``class_labels[i mod len]``; otherwise labels are
    balanced over all classes: sample i gets class ``i mod num_classes``.
    """
    if num_classes == 0:
        if class_labels:
            raise UserError("this model is unconditional (0 classes); give no class labels")
        return None
    if class_labels:
        bad = [c for c in class_labels if not 0 <= int(c) < num_classes]
        if bad:
            raise UserError(f"class labels {bad} are outside 0..{num_classes - 1}; the model has {num_classes} classes")
        table = np.asarray(class_labels, dtype=np.int64)
        return table[np.arange(num_samples) % len(table)]
    return np.arange(num_samples, dtype=np.int64) % num_classes


def chunk_ranges(num_samples: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of at most ``batch_size``: the unit of work, of shards and of resume."""
    assert batch_size >= 1, f"batch_size {batch_size}: the request's validate() refuses it"
    return [range(s, min(s + batch_size, num_samples)) for s in range(0, num_samples, batch_size)]


def rank_chunks(chunks: Sequence[range], rank: int, world_size: int) -> list[range]:
    """Chunk k belongs to rank k mod W (round robin keeps ranks balanced when chunks are equal)."""
    return [c for k, c in enumerate(chunks) if k % world_size == rank]


def num_samples_of(num_samples: Optional[int], class_labels: Optional[Sequence[int]]) -> int:
    """How many images are asked for: ``num_samples``, else one per given class label, else 16."""
    if num_samples is not None:
        return int(num_samples)
    return len(class_labels) if class_labels else DEFAULT_NUM_SAMPLES
