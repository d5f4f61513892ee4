"""Closed-form references: Gaussian data x_0 ~ N(μ, σ²) and its analytic optimal denoiser.

With the optimal ε-model and the optimal (true reverse) variance plugged in:
- E[mse_t] = Var[ε | x_t] = a²σ² / (a²σ² + b²);
- E[vb_t] = ½ log₂(Var[x_{t-1}|x_t] / β̃_t) for t ≥ 1 (E of the KL between the posterior and the
  exact reverse Gaussian), and the t = 0 decoder term is a 1-D integral done with scipy;
- DDPM (full and respaced, exact reverse steps) reproduces the data mean and variance;
- DDIM and DPM-Solver++(2M) are deterministic affine maps of x_T here, whose exact law a
  scalar recursion in this file computes; samples match it, and it approaches the data
  distribution as steps grow.
Every statistical tolerance is 5 standard errors of the estimate at the sample size used.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dit.diffusion import create_diffusion, space_timesteps
from dit.diffusion import sample
from dit.diffusion.samplers import solver_timesteps
from tests.reference.diffusion_oracle import GaussianOracle, linear_alphas_cumprod

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MU, SIGMA = 0.1, 0.25  # |x_0| > 0.999 has probability < 2e-4: the decoder's edge bins don't matter
AC = linear_alphas_cumprod()
LN2 = math.log(2.0)


def _approx_cdf(x):
    """ADM's definition of Φ in the discretised decoder (tanh approximation), in numpy."""
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def expected_decoder_bits(var0: float) -> float:
    """E[-log₂ P(bin of x_0 | x_t=0)] when x_0 | x_t ~ N(model mean, var0) exactly."""
    h = (1.0 / 255.0) / math.sqrt(var0)
    f = lambda u: -np.log(_approx_cdf(u + h) - _approx_cdf(u - h)) * stats.norm.pdf(u)
    return integrate.quad(f, -6, 6, limit=200)[0] / LN2  # outside: mass < 2e-9


def expected_vb_bits(oracle: GaussianOracle, k: int) -> float:
    return 0.5 * math.log(oracle.true_rev_var[k] / oracle.post_var[k]) / LN2


def _data(n, shape=(1, 2, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + SIGMA * torch.randn((n, *shape), generator=g, dtype=torch.float64), g


def _within(samples: torch.Tensor, expected: float):
    mean, se = samples.mean().item(), samples.std().item() / math.sqrt(samples.numel())
    assert abs(mean - expected) < 5 * se + 1e-12, f"{mean} vs {expected} (se {se})"


@pytest.mark.parametrize("t", [0, 1, 30, 400, 999])
def test_loss_terms_equal_their_expected_values(t):
    d = create_diffusion("")
    oracle = GaussianOracle(MU, SIGMA, list(range(1000)))
    x0, g = _data(20000)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    terms = d.training_losses(oracle, x0, torch.full((x0.shape[0],), t), noise=noise)
    a2 = AC[t]
    _within(terms["mse"], a2 * SIGMA**2 / (a2 * SIGMA**2 + 1 - a2))
    expected_vb = expected_decoder_bits(oracle.true_rev_var[0]) if t == 0 else expected_vb_bits(oracle, t)
    _within(terms["vb"], expected_vb)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])


def test_kl_loss_type_is_the_rescaled_bound():
    d_kl, d_mse = create_diffusion("", use_kl=True), create_diffusion("")
    oracle = GaussianOracle(MU, SIGMA, list(range(1000)))
    x0, g = _data(64)
    t = torch.randint(0, 1000, (64,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    kl = d_kl.training_losses(oracle, x0, t, noise=noise)
    mse = d_mse.training_losses(oracle, x0, t, noise=noise)
    assert set(kl) == {"loss"}
    torch.testing.assert_close(kl["loss"], mse["vb"] * 1000)


def test_calc_bpd_loop_matches_analytic_nll():
    d = create_diffusion("")
    oracle = GaussianOracle(MU, SIGMA, list(range(1000)))
    x0, g = _data(192, shape=(1, 4, 4))
    out = d.calc_bpd_loop(oracle, x0, clip_denoised=False, generator=g)
    assert out["vb"].shape == (192, 1000) and out["total_bpd"].shape == (192,)
    # prior: E over x_0 of KL(N(a x_0, b²) ‖ N(0, 1)), per dimension
    a2 = AC[-1]
    prior = 0.5 * (-math.log(1 - a2) + (1 - a2) + a2 * (MU**2 + SIGMA**2) - 1) / LN2
    expected = prior + expected_decoder_bits(oracle.true_rev_var[0])
    expected += sum(expected_vb_bits(oracle, k) for k in range(1, 1000))
    _within(out["total_bpd"], expected)
    # The bound is tight here, so it is also the data's discretised NLL: differential entropy
    # minus log₂(bin width), up to the decoder's bin-integration error (< 0.05 bits).
    entropy_bits = 0.5 * math.log2(2 * math.pi * math.e * SIGMA**2) - math.log2(2 / 255)
    assert abs(expected - entropy_bits) < 0.05
    torch.testing.assert_close(out["total_bpd"], out["vb"].sum(1) + out["prior_bpd"])


def _check_data_stats(x: torch.Tensor, mean: float, var: float):
    n = x.numel()
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / n)


DATA_SHAPE = (4096, 1, 4, 4)


@pytest.mark.parametrize("respacing", ["", "250"])
def test_ddpm_reproduces_data_distribution(respacing):
    d = create_diffusion(respacing)
    oracle = GaussianOracle(MU, SIGMA, sorted(space_timesteps(1000, respacing)))
    x = sample(d, oracle, DATA_SHAPE, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    _check_data_stats(x, MU, SIGMA**2)


def affine_law(kept_desc, final_denoise_at=None, solver="ddim"):
    """Exact law (mean, var) of a deterministic sampler's output, x = A x_T + B, by scalar recursion.

    ε̂(x, t) = k_t (x − a_t μ) with k_t = b_t / (a_t²σ² + b_t²) is affine, so each step maps the pair
    (A, B) affinely. DDIM: x' = a' x̂_0 + b' ε̂. DPM-Solver++(2M) as in Lu et al. 2022 Alg. 2.
    """
    A, B = 1.0, 0.0
    ts = list(kept_desc)
    prev = None
    for i, t in enumerate(ts):
        a, b = math.sqrt(AC[t]), math.sqrt(1 - AC[t])
        k = b / (AC[t] * SIGMA**2 + b**2)
        eA, eB = k * A, k * (B - a * MU)  # ε̂ = eA x_T + eB
        dA, dB = (A - b * eA) / a, (B - b * eB) / a  # x̂_0
        if solver == "ddim":
            ap = math.sqrt(AC[ts[i + 1]]) if i + 1 < len(ts) else 1.0
            A, B = ap * dA + math.sqrt(1 - ap**2) * eA, ap * dB + math.sqrt(1 - ap**2) * eB
            continue
        if i == len(ts) - 1:
            A, B = dA, dB
            break
        an, sn = math.sqrt(AC[ts[i + 1]]), math.sqrt(1 - AC[ts[i + 1]])
        h = math.log(an / sn) - math.log(a / b)
        if prev is None:
            uA, uB = dA, dB
        else:
            r = prev[2] / h
            uA = (1 + 1 / (2 * r)) * dA - prev[0] / (2 * r)
            uB = (1 + 1 / (2 * r)) * dB - prev[1] / (2 * r)
        A = sn / b * A - an * math.expm1(-h) * uA
        B = sn / b * B - an * math.expm1(-h) * uB
        prev = (dA, dB, h)
    return B, A * A


@pytest.mark.parametrize(
    "sampler,steps,rel_bias,rel_many",
    [("ddim", 50, 0.20, 0.015), ("dpm++2m", 20, 0.035, 0.002), ("dpm++2m-karras", 20, 0.12, 0.002)],
)
def test_deterministic_samplers_follow_their_exact_law(sampler, steps, rel_bias, rel_many):
    """Samples match the sampler's exact (discretised) law; that law's variance is within
    ``rel_bias`` of the data's at this step count (σ = 0.25: DDIM-50 −18.6%, DPM-Solver++(2M)
    20 steps +2.9% λ-uniform / +11% Karras) and within ``rel_many`` with many steps (DDIM-1000
    −1.2%: first order; DPM-Solver++(2M) 500 steps −0.08%)."""
    oracle = GaussianOracle(MU, SIGMA, list(range(1000)))
    if sampler == "ddim":
        ts = sorted(space_timesteps(1000, f"ddim{steps}"), reverse=True)
        many = sorted(range(1000), reverse=True)
        law = lambda s: affine_law(s, solver="ddim")
    else:
        spacing = "logsnr" if sampler == "dpm++2m" else "karras"
        ts = solver_timesteps(AC, steps, spacing).tolist()
        many = solver_timesteps(AC, 500, spacing).tolist()
        law = lambda s: affine_law(s, solver="dpm")
    mean, var = law(ts)
    x = sample(
        create_diffusion(""),
        oracle,
        DATA_SHAPE,
        sampler=sampler,
        num_steps=steps,
        generator=torch.Generator().manual_seed(0),
    )
    _check_data_stats(x, mean, var)
    assert abs(var / SIGMA**2 - 1) < rel_bias and abs(mean - MU) < 2e-3
    mean_many, var_many = law(many)
    assert abs(var_many / SIGMA**2 - 1) < rel_many and abs(mean_many - MU) < 2e-3
