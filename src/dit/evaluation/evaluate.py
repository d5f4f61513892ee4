"""``dit eval``'s library function: features of samples and reference → ADM's metrics.

* :func:`reference_features` extracts (or reads from the cache) what the reference contributes:
  its pool features (for precision/recall) and the Gaussian statistics of pool and spatial
  features (for FID and sFID).
* :func:`compute_metrics` turns sample features and those reference arrays into FID, sFID, IS,
  precision, recall and, for classifier features with labelled samples, class accuracy. It is
  the function in-training evaluation calls too.
* :func:`evaluate` does both for two files and attaches the samples' protocol card.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Optional

import numpy as np

from dit.errors import UserError
from dit.evaluation import metrics
from dit.evaluation.features import FeatureExtractor, make_extractor
from dit.evaluation.io import image_batches, load_cached_features, read_protocol_card, save_cached_features


def reference_arrays(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference features → the arrays the metrics need (pool features, mu/sigma, mu_s/sigma_s)."""
    if len(features["pool"]) < 2:
        raise UserError("the reference needs at least 2 images for a covariance")
    pool = metrics.feature_statistics(features["pool"])
    spatial = metrics.feature_statistics(features["spatial"])
    return {"pool": features["pool"].astype(np.float32), "mu": pool.mu, "sigma": pool.sigma,
            "mu_s": spatial.mu, "sigma_s": spatial.sigma}


def reference_features(
    reference: str, extractor: FeatureExtractor, batch_size: int = 64, cache: bool = True, progress: bool = False
) -> dict[str, np.ndarray]:
    """The reference's arrays for :func:`compute_metrics`, cached by content hash + extractor."""
    if cache:
        cached = load_cached_features(reference, extractor.name)
        if cached is not None:
            return cached
    n, batches, _ = image_batches(reference, batch_size)
    arrays = reference_arrays(extractor.features_from_batches(batches, -(-n // batch_size), progress))
    if cache:
        save_cached_features(reference, extractor.name, arrays)
    return arrays


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, float]]:
    """How often arg-max(logits) equals the intended label: overall and per intended class."""
    if labels.max() >= logits.shape[1]:
        raise UserError(f"sample labels go up to {labels.max()} but the classifier knows {logits.shape[1]} classes")
    hit = logits.argmax(axis=1) == labels  # (N,)
    per_class = {str(int(c)): float(hit[labels == c].mean()) for c in np.unique(labels)}
    return float(hit.mean()), per_class


def compute_metrics(
    samples: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    labels: Optional[np.ndarray] = None,
    nearest_k: int = 3,
    is_splits: int = 10,
) -> dict:
    """FID, sFID, IS, precision, recall (+ class accuracy when ``labels`` are given).

    ``samples``: features from :meth:`FeatureExtractor.features`; ``reference``: from
    :func:`reference_features`. IS uses ``min(is_splits, N)`` splits (recorded in the result).
    """
    n = len(samples["pool"])
    if n <= nearest_k or len(reference["pool"]) <= nearest_k:
        raise UserError(f"need more than k={nearest_k} samples and reference images for precision/recall, "
                        f"got {n} and {len(reference['pool'])}")
    pool = metrics.feature_statistics(samples["pool"])
    spatial = metrics.feature_statistics(samples["spatial"])
    splits = min(is_splits, n)
    precision, recall = metrics.precision_recall(reference["pool"], samples["pool"], k=nearest_k)
    out = {
        "fid": metrics.frechet_distance(pool, metrics.Statistics(reference["mu"], reference["sigma"])),
        "sfid": metrics.frechet_distance(spatial, metrics.Statistics(reference["mu_s"], reference["sigma_s"])),
        "inception_score": metrics.inception_score(metrics.softmax(samples["logits"]), splits=splits),
        "precision": precision,
        "recall": recall,
        "num_samples": n,
        "num_reference": int(len(reference["pool"])),
        "nearest_k": nearest_k,
        "is_splits": splits,
    }
    if labels is not None:
        out["class_accuracy"], out["per_class_accuracy"] = class_accuracy(samples["logits"], labels)
    return out


def evaluate(cfg, progress: bool = False) -> dict:
    """Run ``dit eval`` for a :class:`dit.config.EvalConfig`; returns the result dict."""
    from dit.runtime.distributed import resolve_device

    t0 = time.time()
    device = str(resolve_device(cfg.device))  # a bad --device is a one-line error, not a traceback
    extractor = make_extractor(cfg.features, cfg.inception, device)
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {cfg.batch_size}")
    n, batches, labels = image_batches(cfg.samples, cfg.batch_size)  # validates before the long part
    ref = reference_features(cfg.reference, extractor, cfg.batch_size, cfg.cache, progress)
    first = next(batches)
    feats = extractor.features_from_batches(itertools.chain([first], batches), -(-n // cfg.batch_size), progress)
    if feats["pool"].shape[1] != ref["pool"].shape[1]:
        raise UserError("sample and reference features differ in size; was the cache made by another extractor?")
    with_labels = cfg.features.startswith("classifier:") and labels is not None
    result = compute_metrics(feats, ref, labels if with_labels else None, cfg.nearest_k, cfg.is_splits)
    result.update(
        samples=str(Path(cfg.samples)),
        reference=str(Path(cfg.reference)),
        features=extractor.name,
        image_size=list(first.shape[1:3]),
        seconds=round(time.time() - t0, 2),
        protocol=read_protocol_card(cfg.samples),
    )
    return result
