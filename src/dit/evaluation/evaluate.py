"""``dit eval``'s library function: features of samples and reference → ADM's metrics.

* :func:`load_reference` extracts (or reads from the cache) what the reference contributes:
  its pool features (for precision/recall) and the Gaussian statistics of pool and spatial
  features (for FID and sFID). As ADM's evaluator, statistics stored in the reference ``.npz``
  (``mu``, ``sigma``, ``mu_s``, ``sigma_s``, e.g. ``VIRTUAL_imagenet256_labeled.npz``) are used
  instead of statistics of its stored images, when they fit the feature network.
* :func:`make_reference` writes such a file (images + statistics) for any image set.
* :func:`comparability_notes` lists why a result cannot be compared with published numbers.
* :func:`compute_metrics` turns sample features and those reference arrays into FID, sFID, IS,
  precision, recall and, for classifier features with labelled samples, class accuracy. It is
  the function in-training evaluation calls too.
* :func:`evaluate` does both for two files and attaches the samples' protocol card.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dit.errors import UserError
from dit.evaluation import metrics
from dit.evaluation.features import FeatureExtractor, make_extractor
from dit.evaluation.io import (
    NPZ_ERRORS,
    image_batches,
    load_cached_features,
    load_images,
    read_protocol_card,
    require_image_set,
    save_cached_features,
)
from dit.evaluation.set_shape import shape_mismatch
from dit.runtime.checkpoint import atomic_write
from dit.runtime.distributed import resolve_device
from dit.runtime.outputs import refuse_existing

STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
FEATURES_KEY = "dit_features"  # in files made by make_reference: the extractor that made the statistics
PUBLISHED_NUM_SAMPLES = 50_000  # the DiT/ADM tables: 50K samples


def reference_arrays(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference features → the arrays the metrics need (pool features, mu/sigma, mu_s/sigma_s)."""
    if len(features["pool"]) < 2:
        raise UserError("the reference needs at least 2 images for a covariance")
    pool = metrics.feature_statistics(features["pool"])
    spatial = metrics.feature_statistics(features["spatial"])
    return {
        "pool": features["pool"].astype(np.float32),
        "mu": pool.mu,
        "sigma": pool.sigma,
        "mu_s": spatial.mu,
        "sigma_s": spatial.sigma,
    }


@dataclass
class Reference:
    """What the reference contributes to the metrics, and where its statistics came from.

    ``arrays``: ``pool`` features of its images (precision/recall) and ``mu``, ``sigma``, ``mu_s``,
    ``sigma_s`` (FID, sFID). ``statistics``: ``"reference file"`` (stored in the ``.npz``, ADM's
    way) or ``"recomputed"`` (from its images); ``note``: why stored statistics were not used.
    """

    arrays: dict[str, np.ndarray]
    statistics: str
    num_images: int
    made_by: Optional[str] = None
    note: Optional[str] = None

    def describe(self) -> dict:
        """The result JSON's ``reference_statistics`` entry."""
        d = {"source": self.statistics, "num_reference_images": self.num_images}
        if self.statistics == "reference file":
            d["keys"] = list(STAT_KEYS)
            d["made_by"] = self.made_by or "not recorded (ADM's reference batches: the TF Inception graph)"
        if self.note:
            d["note"] = self.note
        return d


def stored_statistics(reference: str | os.PathLike) -> tuple[Optional[dict[str, np.ndarray]], Optional[str]]:
    """(``mu``, ``sigma``, ``mu_s``, ``sigma_s`` stored in the reference ``.npz`` or None, who made them).

    A file holding only some of the four is a user error (ADM's evaluator reads all four).
    """
    p = Path(reference)
    if not (p.is_file() and p.suffix == ".npz"):
        return None, None
    try:
        with np.load(p, allow_pickle=False) as f:
            present = [k for k in STAT_KEYS if k in f.files]
            if not present:
                return None, None
            if len(present) != len(STAT_KEYS):
                raise UserError(
                    f"{p} holds {present} but not all of {list(STAT_KEYS)}; "
                    "rewrite it with `dit make-reference` or drop the statistics"
                )
            stats = {k: np.asarray(f[k], dtype=np.float64) for k in STAT_KEYS}
            made_by = str(f[FEATURES_KEY]) if FEATURES_KEY in f.files else None
    except NPZ_ERRORS as e:
        raise UserError(f"cannot read {p} as .npz ({type(e).__name__}: {e}); the file is damaged") from None
    return stats, made_by


def _statistics_fit(
    stats: dict[str, np.ndarray], made_by: Optional[str], extractor: FeatureExtractor, pool_dim: int, spatial_dim: int
) -> Optional[str]:
    """None when stored statistics can stand in for ours, else the reason they cannot."""
    if made_by is not None and made_by != extractor.name:
        return f"the reference file's statistics were made by {made_by}, not by {extractor.name}"
    if made_by is None and not extractor.name.startswith("inception"):
        return (
            "the reference file's statistics are Inception statistics (ADM's), but the features are " + extractor.name
        )
    shapes = {k: stats[k].shape for k in STAT_KEYS}
    want = {
        "mu": (pool_dim,),
        "sigma": (pool_dim, pool_dim),
        "mu_s": (spatial_dim,),
        "sigma_s": (spatial_dim, spatial_dim),
    }
    if shapes != want:
        return f"the reference file's statistics have shapes {shapes}, the features need {want}"
    return None


def load_reference(
    reference: str, extractor: FeatureExtractor, batch_size: int = 64, cache: bool = True, progress: bool = False
) -> Reference:
    """The reference's arrays for :func:`compute_metrics` (features cached by content hash + extractor).

    Pool features always come from the reference's images (ADM computes precision/recall from
    them); FID/sFID statistics come from the file when it stores fitting ones (ADM's
    ``read_statistics``), else from the same images.
    """
    arrays = None
    if cache:
        arrays = load_cached_features(reference, extractor.name)
    if arrays is None:
        n, batches, _ = image_batches(reference, batch_size)
        arrays = reference_arrays(extractor.features_from_batches(batches, -(-n // batch_size), progress))
        if cache:
            save_cached_features(reference, extractor.name, arrays)
    num = int(len(arrays["pool"]))
    stats, made_by = stored_statistics(reference)
    if stats is None:
        return Reference(arrays, "recomputed", num)
    why_not = _statistics_fit(stats, made_by, extractor, arrays["mu"].shape[0], arrays["mu_s"].shape[0])
    if why_not:
        return Reference(arrays, "recomputed", num, note=why_not + "; recomputed from its images")
    return Reference({**arrays, **stats}, "reference file", num, made_by=made_by)


def reference_features(
    reference: str, extractor: FeatureExtractor, batch_size: int = 64, cache: bool = True, progress: bool = False
) -> dict[str, np.ndarray]:
    """:func:`load_reference`'s arrays alone (what in-training evaluation needs)."""
    return load_reference(reference, extractor, batch_size, cache, progress).arrays


def make_reference(
    images: str,
    out: str | os.PathLike,
    extractor: FeatureExtractor,
    batch_size: int = 64,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write ``out``: an ADM-style reference ``.npz`` of ``images`` (an ``.npz`` or a folder).

    Keys: ``arr_0`` the images (and ``arr_1`` labels when present), ``mu``, ``sigma`` (pool
    features) and ``mu_s``, ``sigma_s`` (spatial features), and ``dit_features``, the extractor's
    name, so ``dit eval`` uses these statistics only with the same network. Returns a summary.
    """
    if Path(out).suffix != ".npz":
        raise UserError(f"{out}: the reference file must end in .npz")
    refuse_existing(out, overwrite, "OUT.npz")  # before the long part; the write itself is atomic
    data = load_images(images)
    arrays = reference_arrays(extractor.features(data.images, batch_size, progress))
    blob = {"arr_0": data.images, **{k: arrays[k] for k in STAT_KEYS}, FEATURES_KEY: np.array(extractor.name)}
    if data.labels is not None:
        blob["arr_1"] = data.labels
    atomic_write(out, lambda f: np.savez(f, **blob))  # type: ignore[arg-type]  # numpy stub: **kw vs allow_pickle
    return {
        "reference": str(out),
        "images": str(images),
        "num_images": int(len(data.images)),
        "features": extractor.name,
        "keys": sorted(blob),
    }


def comparability_notes(num_samples: int, reference: Reference, features_spec: str) -> list[str]:
    """Why this result cannot be compared with published (ADM-evaluator) numbers; empty if it can."""
    notes = []
    if num_samples < PUBLISHED_NUM_SAMPLES:
        notes.append(f"{num_samples} samples, not {PUBLISHED_NUM_SAMPLES:,} (FID is biased upward with fewer)")
    if reference.statistics != "reference file":
        notes.append(
            f"reference statistics recomputed from the reference's {reference.num_images} images, "
            "not read from a reference file (ADM's reference batches store mu/sigma of the whole dataset)"
        )
    if not features_spec.startswith("inception"):
        notes.append(f"features from {features_spec}, not the FID Inception-v3")
    return notes


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
    is_split_size: int = 5000,
) -> dict:
    """FID, sFID, IS, precision, recall (+ class accuracy when ``labels`` are given).

    ``samples``: features from :meth:`FeatureExtractor.features`; ``reference``: from
    :func:`reference_features`. IS over consecutive chunks of ``is_split_size`` samples (ADM);
    ``None`` when the features have no logits (Inception weights without the classifier).
    """
    n = len(samples["pool"])
    if n <= nearest_k or len(reference["pool"]) <= nearest_k:
        raise UserError(
            f"need more than k={nearest_k} samples and reference images for precision/recall, "
            f"got {n} and {len(reference['pool'])}"
        )
    pool = metrics.feature_statistics(samples["pool"])
    spatial = metrics.feature_statistics(samples["spatial"])
    if "logits" in samples:
        inception_score, splits = metrics.inception_score_chunks(metrics.softmax(samples["logits"]), is_split_size)
    else:
        inception_score, splits = None, 0
    precision, recall = metrics.precision_recall(reference["pool"], samples["pool"], k=nearest_k)
    out: dict[str, Any] = {
        "fid": metrics.frechet_distance(pool, metrics.Statistics(reference["mu"], reference["sigma"])),
        "sfid": metrics.frechet_distance(spatial, metrics.Statistics(reference["mu_s"], reference["sigma_s"])),
        "inception_score": inception_score,
        "precision": precision,
        "recall": recall,
        "num_samples": n,
        "num_reference": int(len(reference["pool"])),
        "nearest_k": nearest_k,
        "is_split_size": is_split_size,
        "is_splits": splits,
    }
    if labels is not None and "logits" in samples:
        out["class_accuracy"], out["per_class_accuracy"] = class_accuracy(samples["logits"], labels)
    return out


def evaluate(cfg, progress: bool = False) -> dict:
    """Run ``dit eval`` for a :class:`dit.config.EvalConfig`; returns the result dict."""
    cfg.validate()
    require_image_set(cfg.samples, "samples")  # both inputs before anything slow or cached is touched
    require_image_set(cfg.reference, "reference")
    t0 = time.time()
    device = str(resolve_device(cfg.device))  # a bad --device is a one-line error, not a traceback
    extractor = make_extractor(cfg.features, cfg.inception, device)
    n, batches, labels = image_batches(cfg.samples, cfg.batch_size)  # validates before the long part
    mismatch = shape_mismatch(cfg.samples, cfg.reference)
    if mismatch:
        print(f"warning: {mismatch}", file=sys.stderr, flush=True)  # now, before the long part; also in the JSON
    ref = load_reference(cfg.reference, extractor, cfg.batch_size, cfg.cache, progress)
    first = next(batches)
    feats = extractor.features_from_batches(itertools.chain([first], batches), -(-n // cfg.batch_size), progress)
    if feats["pool"].shape[1] != ref.arrays["pool"].shape[1]:
        raise UserError("sample and reference features differ in size; was the cache made by another extractor?")
    with_labels = cfg.features.startswith("classifier:") and labels is not None
    result = compute_metrics(feats, ref.arrays, labels if with_labels else None, cfg.nearest_k, cfg.is_split_size)
    notes = comparability_notes(n, ref, cfg.features)
    result.update(
        reference_statistics=ref.describe(),
        comparable_with_published=not notes,
        not_comparable_because=notes,
        samples=str(Path(cfg.samples)),
        reference=str(Path(cfg.reference)),
        features=extractor.name,
        image_size=list(first.shape[1:3]),
        seconds=round(time.time() - t0, 2),
        protocol=read_protocol_card(cfg.samples),
    )
    if mismatch:
        result["warnings"] = [mismatch]
    return result
