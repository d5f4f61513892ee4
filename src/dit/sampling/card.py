"""The protocol card: everything that determined a sample file, written beside it as JSON.

Reproducing FID fails most often because the protocol is unknown (guidance scale and channels,
10K vs 50K samples, sampler and steps, precision, decoder). ``dit sample`` writes
``<out>.protocol.json`` next to every sample file and ``dit eval`` copies it into its result
(:func:`dit.evaluation.io.read_protocol_card` reads this very name). :func:`card_settings` is the
one place that assembles ``settings``, for files, the Python API, the server and the training hooks.

The card has two parts: ``settings`` (what fixes the pixels: checkpoint hash, model, diffusion,
sampler, guidance, precision, VAE, labels, seed, number of samples, batch size) and provenance
(git revision, dit version, time, world size, device). A resumed run must match the ``settings``
of the shards it continues (:func:`settings_mismatch`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from dit import __version__
from dit.runtime.checkpoint import atomic_write_json
from dit.runtime.hashing import sha256_of
from dit.runtime.revision import git_revision

CARD_SUFFIX = ".protocol.json"
CARD_FORMAT = "dit-protocol/1"
PIXEL_CONVERSION = "uint8 = floor(clamp(127.5 * x + 128, 0, 255)) of decoder output x in [-1, 1] (official DiT)"


def card_path(samples: str | os.PathLike) -> Path:
    """``<samples>.protocol.json`` (e.g. ``out.npz`` → ``out.npz.protocol.json``)."""
    p = Path(samples)
    return p.with_name(p.name + CARD_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 of a checkpoint file or folder (a diffusers model): the card's checkpoint id."""
    return sha256_of(path)


def provenance(world_size: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Where and when: git revision of the source, dit and torch versions, UTC time, processes, device."""
    import torch

    return {
        "git": git_revision(),
        "dit_version": __version__,
        "torch_version": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "world_size": int(world_size),
        "device": str(device),
    }


def make_card(settings: dict[str, Any], output: str | os.PathLike, extra: Optional[dict[str, Any]] = None) -> dict:
    """The card dict: format tag, output file, ``settings`` and provenance (``extra``)."""
    return {
        "format": CARD_FORMAT,
        "output": str(output),
        "settings": settings,
        "pixel_conversion": PIXEL_CONVERSION,
        **(extra or {}),
    }


def write_card(samples: str | os.PathLike, card: dict) -> Path:
    """Atomically write ``card`` as ``<samples>.protocol.json``."""
    return atomic_write_json(card_path(samples), card)


def settings_mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys of ``settings`` whose values differ (a JSON round trip is applied to both first)."""
    import json

    a, b = json.loads(json.dumps(old)), json.loads(json.dumps(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def label_mode(num_classes: int, class_labels: Optional[Sequence[int]]) -> dict[str, Any]:
    """How labels were chosen, for the protocol card."""
    if num_classes == 0:
        return {"mode": "unconditional"}
    if class_labels:
        return {"mode": "given", "labels": [int(c) for c in class_labels]}
    return {"mode": "balanced", "rule": "sample i has class i mod num_classes", "num_classes": int(num_classes)}


def card_settings(
    checkpoint: dict[str, Any],
    model_config: Any,
    diffusion_config: Any,
    sampler: Any,
    num_samples: int,
    class_labels: Optional[Sequence[int]],
    batch_size: Optional[int] = None,
) -> dict[str, Any]:
    """The card's ``settings``: everything that fixes the pixels (also the shards' resume check).

    ``checkpoint`` says which weights (a file's hash, format and step, or a training run's step);
    ``sampler`` is the :class:`dit.sampling.ImageSampler` that drew; ``batch_size`` is recorded
    where the draw was batched by the caller's choice (files and the API; the training hooks'
    batches follow their own settings).
    """
    settings = {
        "checkpoint": checkpoint,
        "model": model_config.to_dict(),
        "diffusion": diffusion_config.to_dict(),
        **sampler.settings(),
        "num_samples": int(num_samples),
        "class_labels": label_mode(sampler.num_classes, class_labels),
    }
    if batch_size is not None:
        settings["batch_size"] = int(batch_size)
    return settings
