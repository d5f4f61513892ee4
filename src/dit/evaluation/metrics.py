"""Sample-quality metrics of ADM's evaluation suite, in pure numpy/scipy.

The DiT paper reports FID, sFID, Inception Score, precision and recall computed by the
evaluator of ADM (Dhariwal & Nichol 2021, ``evaluations/evaluator.py``). This module follows
that evaluator's definitions on feature arrays; which network produced the features is the
business of :mod:`dit.evaluation.features`.

* FID / sFID: Fréchet distance between Gaussians fitted to pool (resp. spatial) features
  (Heusel et al. 2017), with ADM's ``sqrtm`` guards.
* Inception Score: exp E_x KL(p(y|x) || p(y)) averaged over consecutive chunks of 5,000
  samples, as ADM (10 splits of 50K; Salimans et al. 2016 use 10 equal splits).
* Precision / recall: k-nearest-neighbour manifolds, k = 3 (Kynkäänniemi et al. 2019).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.special import logsumexp, xlogy


@dataclass(frozen=True)
class Statistics:
    """Mean and covariance of a feature set: the Gaussian FID compares."""

    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)


def feature_statistics(features: np.ndarray) -> Statistics:
    """Mean and unbiased covariance (``np.cov``, as ADM) of features (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)  # (N, D)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {features.shape}")
    return Statistics(mu=features.mean(axis=0), sigma=np.atleast_2d(np.cov(features, rowvar=False)))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its singular-matrix warning (the caller checks the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(m)


def frechet_distance(a: Statistics, b: Statistics, eps: float = 1e-6) -> float:
    """Fréchet distance ||μ1-μ2||² + Tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^{1/2}), ADM's evaluator's way.

    Steps (``FIDStatistics.frechet_distance`` in ADM):
    1. ``sqrtm(Σ1 Σ2)``; if it is not finite, retry with ``eps·I`` added to both covariances.
    2. A complex result is accepted when its diagonal's imaginary part is below 1e-3 (real part
       kept). ADM raises otherwise; we instead fall back to :func:`frechet_distance_eigh`, which
       is the same quantity computed from a symmetric eigenproblem, and warn (this happens with
       fewer samples than feature dimensions, where ADM's evaluator crashes).
    """
    mu1, mu2 = np.atleast_1d(a.mu), np.atleast_1d(b.mu)
    s1, s2 = np.atleast_2d(a.sigma), np.atleast_2d(b.sigma)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2  # (D,)
    covmean = _sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates", stacklevel=2
        )
        offset = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = float(np.max(np.abs(covmean.imag)))
            warnings.warn(
                f"sqrtm has an imaginary component {m:.3g} (too few samples for the feature size?); "
                "using the symmetric eigenvalue form of the Fréchet distance instead",
                stacklevel=2,
            )
            return frechet_distance_eigh(a, b)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance_eigh(a: Statistics, b: Statistics) -> float:
    """The Fréchet distance via Tr((Σ1 Σ2)^{1/2}) = Σ √λ_i(Σ1^{1/2} Σ2 Σ1^{1/2}).

    Symmetric positive semi-definite eigenproblems only, so it is stable for singular
    covariances; negative round-off eigenvalues are clipped to 0.
    """
    diff = np.atleast_1d(a.mu) - np.atleast_1d(b.mu)  # (D,)
    s1, s2 = np.atleast_2d(a.sigma), np.atleast_2d(b.sigma)
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Σ1^{1/2}, (D, D)
    lam = linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (N, K) → (N, K)."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


def inception_score(probs: np.ndarray, splits: int = 10) -> float:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) averaged over ``splits`` equal parts.

    The improved-GAN code's way (``np.array_split`` into equal parts). ``dit eval`` reports
    ADM's way instead, :func:`inception_score_chunks` (equal to this one for 50K samples and 10
    splits). ``0·log 0`` counts as 0 (ADM would produce NaN there).
    """
    probs = np.asarray(probs, dtype=np.float64)  # (N, K)
    if probs.ndim != 2 or len(probs) < splits:
        raise ValueError(f"need probabilities of shape (N >= {splits}, K), got {probs.shape}")
    return float(np.mean([_split_score(part) for part in np.array_split(probs, splits)]))


def _split_score(part: np.ndarray) -> float:
    """exp(mean KL(p(y|x) || p(y))) of one split (n, K), p(y) the split's mean."""
    marginal = part.mean(axis=0, keepdims=True)  # (1, K)
    kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)  # (n,)
    return float(np.exp(kl.mean()))


def inception_score_chunks(probs: np.ndarray, split_size: int = 5000) -> tuple[float, int]:
    """ADM's Inception Score: the mean over consecutive chunks of ``split_size`` samples.

    ADM's ``compute_inception_score(activations, split_size=5000)`` scores
    ``preds[i : i + split_size]`` for i = 0, split_size, ...; the last chunk is shorter when N is
    not a multiple (10K samples → 2 chunks, 50K → 10). Returns (score, number of chunks).
    """
    probs = np.asarray(probs, dtype=np.float64)  # (N, K)
    if probs.ndim != 2 or len(probs) == 0 or split_size < 1:
        raise ValueError(f"need probabilities (N >= 1, K) and split_size >= 1, got {probs.shape}, {split_size}")
    scores = [_split_score(probs[i : i + split_size]) for i in range(0, len(probs), split_size)]
    return float(np.mean(scores)), len(scores)


def pairwise_sq_distances(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (N, M) between rows of u (N, D) and v (M, D), clipped at 0."""
    nu = np.einsum("nd,nd->n", u, u)[:, None]  # (N, 1)
    nv = np.einsum("md,md->m", v, v)[None, :]  # (1, M)
    d = u @ v.T  # (N, M); updated in place to keep one N×M buffer
    d *= -2.0
    d += nu
    d += nv
    return np.maximum(d, 0.0, out=d)


def manifold_radii(features: np.ndarray, k: int = 3, batch_size: int = 2048) -> np.ndarray:
    """Squared distance of every point to its k-th nearest neighbour (itself excluded), (N,).

    As ADM's ``ManifoldEstimator.manifold_radii``: index k of the partially sorted distance row,
    whose index 0 is the point itself. Rows are processed ``batch_size`` at a time, so the
    memory is batch_size × N floats (2048 × 50K float32 ≈ 400 MB).
    """
    features = np.asarray(features, dtype=np.float32)  # (N, D)
    n = len(features)
    if n <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {n}")
    radii = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_size):
        rows = features[start : start + batch_size]  # (B, D)
        d = pairwise_sq_distances(rows, features)  # (B, N)
        radii[start : start + len(rows)] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, batch_size: int) -> np.ndarray:
    """For each point, whether it lies in some ball (centre j, squared radius radii[j]), (N,)."""
    inside = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), batch_size):
        rows = points[start : start + batch_size]  # (B, D)
        hit = np.zeros(len(rows), dtype=bool)
        for cstart in range(0, len(centres), batch_size):
            d = pairwise_sq_distances(rows, centres[cstart : cstart + batch_size])  # (B, C)
            hit |= (d <= radii[None, cstart : cstart + batch_size]).any(axis=1)
        inside[start : start + len(rows)] = hit
    return inside


def precision_recall(ref: np.ndarray, samples: np.ndarray, k: int = 3, batch_size: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) as in ADM's evaluator.

    precision: fraction of samples inside the reference manifold (union of balls around each
    reference point reaching its k-th neighbour); recall: fraction of reference points inside
    the sample manifold. Distances are squared Euclidean in float32, computed in blocks of
    ``batch_size`` × ``batch_size``.
    """
    ref = np.asarray(ref, dtype=np.float32)  # (R, D)
    samples = np.asarray(samples, dtype=np.float32)  # (S, D)
    r_ref = manifold_radii(ref, k, batch_size)
    r_smp = manifold_radii(samples, k, batch_size)
    precision = _coverage(samples, ref, r_ref, batch_size).mean()
    recall = _coverage(ref, samples, r_smp, batch_size).mean()
    return float(precision), float(recall)
