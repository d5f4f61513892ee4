"""KL of Gaussians and the discretised Gaussian log-likelihood against scipy."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dit.diffusion.losses import approx_standard_normal_cdf, discretized_gaussian_log_likelihood, mean_flat, normal_kl


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.5, 0.01, 1.4, 0.02)])
def test_normal_kl_against_numerical_integration(m1, v1, m2, v2):
    p, q = stats.norm(m1, math.sqrt(v1)), stats.norm(m2, math.sqrt(v2))
    s = math.sqrt(v1)
    ref = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), m1 - 12 * s, m1 + 12 * s, limit=200)[0]
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    got = normal_kl(t(m1), torch.log(t(v1)), t(m2), torch.log(t(v2))).item()
    assert got == pytest.approx(ref, rel=1e-7, abs=1e-10)


def test_normal_kl_accepts_python_scalar_log_variance():
    x = torch.tensor([0.5, -0.5], dtype=torch.float64)
    torch.testing.assert_close(normal_kl(x, torch.zeros_like(x), 0.0, 0.0), 0.5 * x**2)


def test_approx_cdf_error_bound():
    x = np.linspace(-8, 8, 20001)
    err = np.abs(approx_standard_normal_cdf(torch.from_numpy(x)).numpy() - stats.norm.cdf(x))
    assert err.max() < 2e-4


def _scipy_log_bin_probs(x, mean, scale):
    lo, hi = x - 1 / 255, x + 1 / 255
    p = stats.norm.cdf(hi, mean, scale) - stats.norm.cdf(lo, mean, scale)
    p = np.where(x < -0.999, stats.norm.cdf(hi, mean, scale), p)
    p = np.where(x > 0.999, stats.norm.sf(lo, mean, scale), p)
    return np.log(np.maximum(p, 1e-12))  # ADM floors bin probabilities at 1e-12


def _case():
    g = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-1, 1, 256), g.uniform(-1, 1, 100)])  # both edge bins included
    mean = np.clip(x + g.normal(0, 0.05, x.shape), -1, 1)
    scale = np.exp(g.uniform(np.log(0.01), np.log(0.3), x.shape))
    return x, mean, scale


def test_discretized_log_likelihood_exact_cdf_matches_scipy():
    x, mean, scale = _case()
    got = discretized_gaussian_log_likelihood(
        torch.from_numpy(x), means=torch.from_numpy(mean), log_scales=torch.log(torch.from_numpy(scale)), exact_cdf=True
    )
    # rtol 1e-6: far-tail bins are differences of two CDFs near 1 (cancellation in both codes)
    np.testing.assert_allclose(got.numpy(), _scipy_log_bin_probs(x, mean, scale), rtol=1e-6, atol=1e-10)


def test_discretized_log_likelihood_adm_approximation_is_close_to_scipy():
    """ADM's tanh CDF (the default, for official loss values) moves bin probabilities < 4e-4."""
    x, mean, scale = _case()
    got = discretized_gaussian_log_likelihood(
        torch.from_numpy(x), means=torch.from_numpy(mean), log_scales=torch.log(torch.from_numpy(scale))
    )
    np.testing.assert_allclose(np.exp(got.numpy()), np.exp(_scipy_log_bin_probs(x, mean, scale)), atol=4e-4)


def test_mean_flat():
    x = torch.arange(24.0).view(2, 3, 4)
    torch.testing.assert_close(mean_flat(x), torch.tensor([5.5, 17.5]))
