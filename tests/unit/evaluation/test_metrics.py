"""ADM's metrics against closed forms, direct formulas and brute-force references."""

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

from dit.evaluation import metrics
from dit.evaluation.metrics import Statistics


def _random_stats(rng, d, n=400):
    feats = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return metrics.feature_statistics(feats), feats


def _direct_frechet(s1: Statistics, s2: Statistics) -> float:
    """Textbook formula with an independent matrix root: Tr((Σ1Σ2)^½) from eigenvalues of Σ1Σ2."""
    lam = np.linalg.eigvals(s1.sigma @ s2.sigma)  # real, non-negative for PSD products
    tr = np.sqrt(np.clip(lam.real, 0, None)).sum()
    d = s1.mu - s2.mu
    return float(d @ d + np.trace(s1.sigma) + np.trace(s2.sigma) - 2 * tr)


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    s = metrics.feature_statistics(x)
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, (x - x.mean(0)).T @ (x - x.mean(0)) / 49, rtol=1e-10)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_matches_direct_formula(d):
    rng = np.random.default_rng(d)
    a, _ = _random_stats(rng, d)
    b, _ = _random_stats(rng, d)
    expected = _direct_frechet(a, b)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-8)
    assert metrics.frechet_distance_eigh(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_frechet_closed_form_diagonal_gaussians():
    # Commuting (diagonal) covariances: FD = ||Δμ||² + Σ (√a_i − √b_i)².
    va, vb = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    a = Statistics(np.zeros(3), np.diag(va))
    b = Statistics(np.array([1.0, 2.0, 0.0]), np.diag(vb))
    expected = 5.0 + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_fid_of_identical_features_is_zero():
    rng = np.random.default_rng(1)
    a, _ = _random_stats(rng, 32)
    assert abs(metrics.frechet_distance(a, a)) < 1e-6


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0])
def test_fid_grows_as_squared_mean_shift(shift):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(500, 8))
    delta = shift * rng.normal(size=8)
    a = metrics.feature_statistics(feats)
    b = metrics.feature_statistics(feats + delta)
    assert metrics.frechet_distance(a, b) == pytest.approx(delta @ delta, rel=1e-6)


def test_frechet_with_fewer_samples_than_dims_matches_eigen_form():
    # 3 samples in 64 dims: rank-2 covariances, the hard case for sqrtm.
    rng = np.random.default_rng(3)
    a = metrics.feature_statistics(rng.normal(size=(3, 64)))
    b = metrics.feature_statistics(rng.normal(size=(3, 64)) + 1)
    fd = metrics.frechet_distance(a, b)
    assert np.isfinite(fd)
    assert fd == pytest.approx(metrics.frechet_distance_eigh(a, b), rel=1e-6)


def test_frechet_guard_complex_sqrtm_falls_back_to_eigen_form(monkeypatch):
    rng = np.random.default_rng(10)
    a, _ = _random_stats(rng, 4)
    b, _ = _random_stats(rng, 4)
    monkeypatch.setattr(metrics, "_sqrtm", lambda m: np.eye(4) * (1 + 1j))  # imaginary diagonal ≫ 1e-3
    with pytest.warns(UserWarning, match="imaginary"):
        fd = metrics.frechet_distance(a, b)
    assert fd == pytest.approx(_direct_frechet(a, b), rel=1e-6)


def test_frechet_guard_non_finite_sqrtm_retries_with_eps(monkeypatch):
    rng = np.random.default_rng(11)
    a, _ = _random_stats(rng, 4)
    b, _ = _random_stats(rng, 4)
    calls = []

    def fake(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else linalg.sqrtm(m)

    monkeypatch.setattr(metrics, "_sqrtm", fake)
    with pytest.warns(UserWarning, match="singular product"):
        fd = metrics.frechet_distance(a, b, eps=1e-6)
    offset = np.eye(4) * 1e-6
    np.testing.assert_allclose(calls[1], (a.sigma + offset) @ (b.sigma + offset))
    assert fd == pytest.approx(_direct_frechet(a, b), rel=1e-5)


def test_inception_score_uniform_is_one():
    probs = metrics.softmax(np.zeros((100, 7)))
    assert metrics.inception_score(probs) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_inception_score_balanced_one_hot_is_num_classes(k):
    probs = np.eye(k)[np.arange(10 * k) % k]  # each split holds every class once
    assert metrics.inception_score(probs) == pytest.approx(k, rel=1e-12)


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3, size=(200, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    direct = []
    for part in np.split(p, 10):
        py = part.mean(0)
        direct.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in part])))
    assert metrics.inception_score(metrics.softmax(logits)) == pytest.approx(np.mean(direct), rel=1e-10)


def _adm_inception_score(preds: np.ndarray, split_size: int) -> float:
    """ADM's evaluator's ``compute_inception_score`` loop, as written there."""
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


@pytest.mark.parametrize("n,size,chunks", [(23, 5, 5), (20, 5, 4), (7, 5000, 1), (12, 1, 12)])
def test_inception_score_chunks_are_adms_consecutive_chunks(n, size, chunks):
    logits = np.random.default_rng(n).normal(scale=3, size=(n, 5))
    score, count = metrics.inception_score_chunks(metrics.softmax(logits), size)
    assert count == chunks
    assert score == pytest.approx(_adm_inception_score(metrics.softmax(logits), size), rel=1e-12)
    if n == 23:  # a last, shorter chunk is scored on its own: not equal splits
        assert score != pytest.approx(metrics.inception_score(metrics.softmax(logits), splits=5), rel=1e-6)


def test_manifold_radii_match_brute_force_and_chunking():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(97, 6)).astype(np.float32)
    d = cdist(x, x, "sqeuclidean")
    expected = np.sort(d, axis=1)[:, 3]  # column 0 is the point itself
    np.testing.assert_allclose(metrics.manifold_radii(x, k=3, batch_size=1000), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics.manifold_radii(x, k=3, batch_size=10), expected, rtol=1e-4, atol=1e-5)


def test_precision_recall_matches_brute_force_in_chunks():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(120, 5))
    smp = rng.normal(loc=0.7, size=(90, 5))
    r_ref = np.sort(cdist(ref, ref, "sqeuclidean"), 1)[:, 3]
    r_smp = np.sort(cdist(smp, smp, "sqeuclidean"), 1)[:, 3]
    prec = (cdist(smp, ref, "sqeuclidean") <= r_ref[None]).any(1).mean()
    rec = (cdist(ref, smp, "sqeuclidean") <= r_smp[None]).any(1).mean()
    assert 0 < prec < 1 and 0 < rec < 1  # a non-trivial case
    assert metrics.precision_recall(ref, smp, batch_size=16) == pytest.approx((prec, rec), abs=1e-12)


def test_precision_recall_identical_is_one_one():
    x = np.random.default_rng(7).normal(size=(60, 8))
    assert metrics.precision_recall(x, x.copy()) == (1.0, 1.0)


def test_precision_recall_disjoint_far_is_zero_zero():
    rng = np.random.default_rng(8)
    assert metrics.precision_recall(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 100.0) == (0.0, 0.0)


def test_precision_recall_samples_cover_one_of_two_modes():
    # Reference: two far-apart clusters A, B; samples: exactly the points of A.
    # Every sample is a reference point → precision 1; only A's half of the reference lies in the
    # sample manifold → recall 0.5.
    rng = np.random.default_rng(9)
    a = rng.normal(size=(40, 3))
    b = rng.normal(size=(40, 3)) + 50.0
    precision, recall = metrics.precision_recall(np.concatenate([a, b]), a.copy())
    assert precision == 1.0 and recall == 0.5
