"""One interface for the networks whose features the metrics compare.

A :class:`FeatureExtractor` maps uint8 images (N, H, W, 3) to three float arrays:
``pool`` (N, Dp) for FID and precision/recall, ``spatial`` (N, Ds) for sFID and ``logits``
(N, K) for the Inception Score and class accuracy (absent when the network has no classifier,
e.g. Inception weights from ``dit convert-inception``). Implementations: the FID Inception-v3
(:func:`inception_extractor`) and the small digit classifier (:func:`classifier_extractor`).
``make_extractor`` turns the command line's ``--features`` choice into one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

from dit.config import parse_features
from dit.errors import UserError
from dit.evaluation.classifier import load_classifier
from dit.evaluation.inception import find_weights, load_inception
from dit.runtime.hashing import sha256_of

FEATURE_KEYS = ("pool", "spatial", "logits")


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a file (identifies weights and references)."""
    return sha256_of(path)[:length]


class FeatureExtractor:
    """A network in eval mode whose ``forward(uint8 (B, H, W, 3))`` returns the three features.

    ``name`` identifies the network and its weights (it keys cached reference statistics).
    """

    def __init__(self, net: nn.Module, name: str, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.name = name

    def features(self, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> dict[str, np.ndarray]:
        """uint8 images (N, H, W, 3) → dict(pool (N, Dp), spatial (N, Ds), logits (N, K)) float32."""
        if batch_size < 1:
            raise UserError(f"--batch-size must be positive, got {batch_size}")
        batches = (images[s : s + batch_size] for s in range(0, len(images), batch_size))
        return self.features_from_batches(batches, total=-(-len(images) // batch_size), progress=progress)

    @torch.no_grad()
    def features_from_batches(
        self, batches: Iterable[np.ndarray], total: Optional[int] = None, progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Like :meth:`features` for an iterable of uint8 (B, H, W, 3) batches (streamed files)."""
        out: dict[str, list[np.ndarray]] = {}
        if progress:
            from dit.runtime.progress import progress as with_progress

            batches = with_progress(batches, total=total, desc=f"features ({self.name})", unit="batch")
        for images in batches:
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise UserError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
            # np.require copies only when needed: a read-only (memory-mapped) batch must not reach torch.
            feats = self.net(torch.from_numpy(np.require(images, requirements=["C", "W"])).to(self.device))
            for k in FEATURE_KEYS:
                if k in feats:
                    out.setdefault(k, []).append(feats[k].float().cpu().numpy())
        if not out.get("pool"):
            raise UserError("no images to extract features from")
        return {k: np.concatenate(v) for k, v in out.items()}


def inception_extractor(path: Optional[str] = None, device: str = "cpu") -> FeatureExtractor:
    """The FID Inception-v3 from a local weights file (see :mod:`dit.evaluation.inception`)."""
    weights = find_weights(path)
    return FeatureExtractor(load_inception(weights), f"inception-{file_digest(weights)}", device)


def classifier_extractor(path: str, device: str = "cpu") -> FeatureExtractor:
    """A classifier trained by ``dit train-classifier`` (safetensors + JSON config)."""
    net = load_classifier(path)
    return FeatureExtractor(net, f"classifier-{file_digest(path)}", device)


def make_extractor(
    spec: str = "inception", inception_path: Optional[str] = None, device: str = "cpu"
) -> FeatureExtractor:
    """``"inception"`` or ``"classifier:PATH"`` → the extractor."""
    kind, path = parse_features(spec)
    if kind == "inception":
        return inception_extractor(inception_path, device)
    if not Path(path).is_file():
        raise UserError(f"classifier file {path} not found; train one with `dit train-classifier --out {path}`")
    return classifier_extractor(path, device)
