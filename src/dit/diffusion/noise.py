"""The noise every sampler draws (per-row generators keep a sample independent of its batch) and
the optional progress bar of a sampling loop."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from dit.runtime.rng import randn_rows

Generator = Union[None, torch.Generator, Sequence[torch.Generator]]


def draw_noise(shape: Sequence[int], generator: Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise from nothing, one generator, or one generator per batch row.

    With a list of generators, row i comes from generator i only, so a sample's trajectory
    does not depend on the batch (or process) it is drawn in.
    """
    if generator is None:
        return torch.randn(*shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(*shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    return randn_rows(shape, list(generator), device=device, dtype=dtype)


def progress_bar(iterable, enabled: bool, desc: str):
    """``iterable`` with progress when ``enabled`` (a bar on a terminal, log lines elsewhere)."""
    if not enabled:
        return iterable
    from dit.runtime.progress import progress

    return progress(iterable, desc=desc, unit="step")
