"""Closed-form references for MeanFlow (average velocity of the linear path).

For data x ~ N(μ, s²) per element and z_t = (1 − t)x + t ε, the flow ODE is affine: every trajectory
is z_t = m_t + σ_t·ξ with m_t = (1 − t)μ, σ_t = √((1 − t)²s² + t²) and ξ = z_1 ~ N(0, 1) fixed along
it. So the average velocity over [r, t] is

    u(z, r, t) = (z_t − z_r)/(t − r) = (m_t − m_r + (σ_t − σ_r)·(z − m_t)/σ_t) / (t − r),

(r = t: the instantaneous v = −μ + σ'_t (z − m_t)/σ_t), and ∂_z u = (1 − σ_r/σ_t)/(t − r).
The MeanFlow target u_tgt = v_c − (t − r)(v_c ∂_z u + ∂_t u) with the conditional velocity
v_c = ε − x has E[u_tgt | z_t] = u (the MeanFlow identity), so u minimises the plain squared
loss, with minimum per element

    E Var[u_tgt | z_t] = (1 − (t − r)∂_z u)²·Var[v_c | z_t] = (σ_r/σ_t)²·(1 + s² − (t − (1 − t)s²)²/σ_t²).

The field is written here from these formulas, independently of ``dit.diffusion.meanflow``.
Statistical tolerances are 5 standard errors at the sample size used.
"""

from __future__ import annotations

import math

import pytest
import torch

from dit.diffusion.meanflow import MODEL_TIME_SCALE
from dit.diffusion.meanflow import IntervalTimes, MeanFlow, sample
from dit.diffusion.timesteps import logit_normal

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MU, S = 0.3, 0.5


def _col(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return t.to(z.dtype).reshape(-1, *([1] * (z.dim() - 1)))


def sigma(t: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((1 - t) ** 2 * S**2 + t**2)


def exact_average_velocity(z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """u(z, r, t) of the module docstring; r = t gives the instantaneous velocity (its limit)."""
    t, r = _col(t, z), _col(r, z)
    m_t, m_r, s_t, s_r = (1 - t) * MU, (1 - r) * MU, sigma(t), sigma(r)
    xi = (z - m_t) / s_t
    ds_dt = (-(1 - t) * S**2 + t) / s_t
    h = t - r
    jumped = (m_t - m_r + (s_t - s_r) * xi) / torch.where(h > 0, h, torch.ones_like(h))
    return torch.where(h > 0, jumped, -MU + ds_dt * xi)


class Oracle:
    """The exact u as a network: called with model times t and interval t − r (MODEL_TIME_SCALE), predicting u."""

    def __init__(self, scale: float = 1.0):
        self.scale, self.calls = scale, 0

    def __call__(self, z, t_model, interval=None, y=None, drop_mask=None):
        self.calls += 1
        t = t_model / MODEL_TIME_SCALE
        r = t - interval / MODEL_TIME_SCALE
        return self.scale * exact_average_velocity(z, r, t)


def minimal_loss(r: float, t: float) -> float:
    s_t, s_r = math.sqrt((1 - t) ** 2 * S**2 + t**2), math.sqrt((1 - r) ** 2 * S**2 + r**2)
    return (s_r / s_t) ** 2 * (1 + S**2 - (t - (1 - t) * S**2) ** 2 / s_t**2)


def _draw(n: int, seed: int, shape=(1, 2, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = MU + S * torch.randn((n, *shape), generator=g, dtype=torch.float64)
    return x, torch.randn((n, *shape), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("r, t", [(0.0, 1.0), (0.2, 0.7), (0.5, 0.5), (0.05, 0.3)])
def test_the_exact_average_velocity_reaches_the_closed_form_minimal_loss(r, t):
    """The trainer's loss (jvp target, plain L2) at the exact u averages to the closed-form minimum,
    and a wrong u (scaled by 1.5) does worse on the same target: the minimiser is the average velocity."""
    n = 20000
    x, eps = _draw(n, seed=1)
    times = torch.tensor([[t, r]], dtype=torch.float64).expand(n, 2)
    objective = MeanFlow("v", adaptive_power=0.0)
    mse = objective.training_losses(Oracle(), x, times, noise=eps)["mse"]  # (n,): per-element mean
    expected = minimal_loss(r, t)
    se = mse.std().item() / math.sqrt(n)
    assert abs(mse.mean().item() - expected) < 5 * se + 1e-9, (mse.mean().item(), expected, se)
    # against the exact model's target (the loss of a model is against its own jvp, so compare on one target)
    tt, rr = times[:, 0], times[:, 1]
    z = (1 - _col(tt, x)) * x + _col(tt, x) * eps
    target = objective.target(Oracle(), z, tt, rr, eps - x, {})
    u = exact_average_velocity(z, rr, tt)
    torch.testing.assert_close(((u - target) ** 2).flatten(1).mean(1), mse)
    excess = (((1.5 * u - target) ** 2) - (u - target) ** 2).flatten(1).mean(1)  # (n,), paired per example
    assert excess.mean().item() > 5 * excess.std().item() / math.sqrt(n)


def test_the_jvp_target_is_the_average_velocity_where_the_conditional_velocity_is_the_marginal_one():
    """At ε − x equal to the marginal v(z_t) (a point on the exact trajectory), u_tgt = u exactly."""
    n, t, r = 64, 0.8, 0.3
    x, eps = _draw(n, seed=2)
    tt, rr = torch.full((n,), t, dtype=torch.float64), torch.full((n,), r, dtype=torch.float64)
    z = (1 - t) * x + t * eps
    v = exact_average_velocity(z, tt, tt)  # the marginal velocity at z_t
    target = MeanFlow("v").target(Oracle(), z, tt, rr, v, {})
    torch.testing.assert_close(target, exact_average_velocity(z, rr, tt), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_one_and_few_step_samples_follow_the_data_law_exactly(steps):
    """z_0 = z_1 − u(z_1, 0, 1) (and any grid of jumps) maps noise ξ to μ + s·ξ: the data law, in `steps` calls."""
    n = 4000
    noise = _draw(n, seed=3)[1]
    oracle = Oracle()
    ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    out = sample(oracle, noise, ts)
    assert oracle.calls == steps
    torch.testing.assert_close(out, MU + S * noise, rtol=1e-9, atol=1e-9)
    mean, std = out.mean().item(), out.std().item()
    assert abs(mean - MU) < 5 * S / math.sqrt(out.numel()) and abs(std - S) < 5 * S / math.sqrt(2 * out.numel())


def test_x_prediction_one_step_lands_on_the_networks_clean_image():
    """With prediction="xstart", u = (z − x̂)/t, so the jump to r = 0 returns the network's x̂ itself."""
    z = torch.randn(8, 1, 4, 4, dtype=torch.float64)
    clean = torch.randn(8, 1, 4, 4, dtype=torch.float64)
    out = sample(
        lambda z_, t_, interval=None: clean, z, torch.tensor([1.0, 0.0], dtype=torch.float64), prediction="xstart"
    )
    torch.testing.assert_close(out, clean, rtol=1e-12, atol=1e-12)


def test_interval_times_follow_the_papers_law():
    """(t, r): two logit-normal draws ordered, r = t on all but a share of the examples."""
    n = 200000
    coins = torch.rand(n, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    times = IntervalTimes(lambda u: logit_normal(u, -0.4, 1.0), share=0.25)(coins)
    t, r = times[:, 0].double(), times[:, 1].double()
    assert times.shape == (n, 2) and bool((r <= t).all()) and bool((t <= 1).all()) and bool((r >= 0).all())
    distinct = (r < t).double().mean().item()
    assert abs(distinct - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
    # the larger of two logit-normal draws: P(t ≤ 0.5) = Φ(0.4)², P(r ≤ 0.5 | r < t) = 1 − (1 − Φ(0.4))²
    phi = 0.5 * (1 + math.erf(0.4 / math.sqrt(2)))
    assert abs((t <= 0.5).double().mean().item() - phi**2) < 0.01
    assert abs((r[r < t] <= 0.5).double().mean().item() - (1 - (1 - phi) ** 2)) < 0.01


def test_guidance_is_folded_into_the_target_on_kept_labels_only():
    """ṽ = ω·v + (1 − ω)·u(z, t, t | ∅) where the label is kept; dropped rows keep v."""
    n = 4
    z, v = torch.randn(n, 1, 2, 2, dtype=torch.float64), torch.randn(n, 1, 2, 2, dtype=torch.float64)
    t = torch.full((n,), 0.6, dtype=torch.float64)
    drop = torch.tensor([False, True, False, True])
    seen = {}

    def model(z_, t_model, interval=None, y=None, drop_mask=None):
        seen["drop"] = drop_mask.clone()
        return torch.full_like(z_, 2.0)  # the unconditional u

    out = MeanFlow("v", guidance=3.0).guided_velocity(model, z, t, v, {"y": torch.zeros(n), "drop_mask": drop})
    assert bool(seen["drop"].all())  # the unconditional call drops every label
    torch.testing.assert_close(out[~drop], 3.0 * v[~drop] + (1 - 3.0) * 2.0)
    torch.testing.assert_close(out[drop], v[drop])


@pytest.mark.parametrize("steps", [None, 1])
def test_the_registry_sampler_draws_the_data_law_in_its_calls(steps):
    """`--sampler meanflow` (the default of a MeanFlow checkpoint: 2 calls) maps noise ξ to μ + s·ξ."""
    from dit.diffusion import sample as registry_sample

    noise = _draw(500, seed=5)[1]
    oracle = Oracle()
    out = registry_sample(MeanFlow("v"), oracle, noise.shape, num_steps=steps, noise=noise)
    assert oracle.calls == (2 if steps is None else 1)
    torch.testing.assert_close(out, MU + S * noise, rtol=1e-6, atol=1e-6)
