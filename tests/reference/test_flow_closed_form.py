"""Closed-form references for flow matching (linear interpolant, velocity prediction).

For data x_0 ~ N(μ, s²) per element and x_t = (1 − t)x_0 + t ε, everything is jointly Gaussian:
  x_t ~ N((1 − t)μ, V_t),  V_t = (1 − t)²s² + t²,
  E[v | x_t] = −μ + (t − (1 − t)s²)/V_t · (x_t − (1 − t)μ)    (v = ε − x_0),
  Var[v | x_t] = 1 + s² − (t − (1 − t)s²)²/V_t,
and the ODE dx/dt = E[v | x] maps noise x_1 to x_0 = μ + s·x_1 exactly (a monotone affine flow).
The field is written here from these formulas, independently of ``dit.diffusion.flow``.
Every statistical tolerance is 5 standard errors of the estimate at the sample size used.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dit.diffusion import flow_samplers as fs
from dit.diffusion import sample
from dit.diffusion.flow import TIME_SCALE, FlowMatching, eps_from_velocity, score_from_velocity, x0_from_velocity
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion.timesteps import logit_normal

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MU, S = 0.3, 0.5


def optimal_velocity(x: torch.Tensor, t: torch.Tensor, mu=MU, s=S) -> torch.Tensor:
    """E[ε − x_0 | x_t] for x_0 ~ N(mu, s²); t (N,) in [0, 1]."""
    t = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    var = (1 - t) ** 2 * s**2 + t**2
    return -mu + (t - (1 - t) * s**2) / var * (x - (1 - t) * mu)


class FlowOracle:
    """The optimal velocity model, called as the samplers call models: at model time t·1000."""

    def __init__(self, mu=MU, s=S):
        self.mu, self.s, self.calls = mu, s, 0

    def __call__(self, x, t_model, y=None, **_):
        self.calls += 1
        return optimal_velocity(x, t_model.double() / TIME_SCALE, self.mu, self.s)


def _within(samples: torch.Tensor, expected: float, extra: float = 0.0):
    mean, se = samples.mean().item(), samples.std().item() / math.sqrt(samples.numel())
    assert abs(mean - expected) < 5 * se + extra, f"{mean} vs {expected} (se {se})"


def _std_within(samples: torch.Tensor, expected: float, extra: float = 0.0):
    n = samples.numel()
    std = samples.std().item()
    assert abs(std - expected) < 5 * expected / math.sqrt(2 * n) + extra, f"std {std} vs {expected}"


def _noise(n, shape=(1, 2, 2), seed=0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_loss_of_the_optimal_field_is_the_conditional_variance(t):
    g = torch.Generator().manual_seed(1)
    x0 = MU + S * torch.randn((20000, 1, 2, 2), generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    terms = FlowMatching().training_losses(
        FlowOracle(), x0, torch.full((x0.shape[0],), t, dtype=torch.float64), noise=noise
    )
    var = (1 - t) ** 2 * S**2 + t**2
    _within(terms["mse"], 1 + S**2 - (t - (1 - t) * S**2) ** 2 / var)
    assert torch.equal(terms["loss"], terms["mse"])


def test_loss_of_a_zero_model_is_the_second_moment_of_the_target():
    g = torch.Generator().manual_seed(2)
    x0 = MU + S * torch.randn((20000, 1, 2, 2), generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.rand(x0.shape[0], generator=g, dtype=torch.float64)
    terms = FlowMatching().training_losses(lambda x, tt, **_: torch.zeros_like(x), x0, t, noise=noise)
    _within(terms["mse"], 1 + S**2 + MU**2)  # E[(ε − x_0)²]


def test_the_model_sees_t_times_1000_and_the_interpolant():
    seen = {}

    def model(x, t, **_):
        seen.update(x=x, t=t)
        return torch.zeros_like(x)

    x0, noise = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 3.0)
    FlowMatching().training_losses(model, x0, torch.tensor([0.25, 1.0]), noise=noise)
    torch.testing.assert_close(seen["t"], torch.tensor([250.0, 1000.0]))
    torch.testing.assert_close(seen["x"][0], torch.full((1, 2, 2), 0.75 + 0.75))  # 0.75·1 + 0.25·3
    torch.testing.assert_close(seen["x"][1], noise[1])


def test_eps_x0_and_score_from_the_optimal_velocity_match_their_closed_forms():
    t = torch.full((5000,), 0.4, dtype=torch.float64)
    x = _noise(5000) * math.sqrt(0.6**2 * S**2 + 0.4**2) + 0.6 * MU  # x_t samples
    v = optimal_velocity(x, t)
    var = 0.6**2 * S**2 + 0.4**2
    torch.testing.assert_close(score_from_velocity(x, t, v), -(x - 0.6 * MU) / var)  # ∇log N(x; m_t, V_t)
    # E[x_0 | x_t] and E[ε | x_t] by Gaussian conditioning
    torch.testing.assert_close(x0_from_velocity(x, t, v), MU + 0.6 * S**2 / var * (x - 0.6 * MU))
    torch.testing.assert_close(eps_from_velocity(x, t, v), 0.4 / var * (x - 0.6 * MU))


@pytest.mark.parametrize(
    "sampler,steps,shift,gap", [("euler", 400, 1.0, 0.02), ("heun", 50, 1.0, 2e-3), ("heun", 50, 3.0, 2e-3)]
)
def test_many_step_ode_sampling_recovers_the_data_law_and_the_exact_map(sampler, steps, shift, gap):
    """gap: the largest pointwise distance to the exact map allowed (first order: ~1/steps, at |x_1| ≈ 4.5)."""
    x1 = _noise(20000)
    x = sample(FlowMatching(), FlowOracle(), x1.shape, sampler=sampler, num_steps=steps, noise=x1, time_shift=shift)
    _within(x, MU)
    _std_within(x, S)
    torch.testing.assert_close(x, MU + S * x1, atol=gap, rtol=0)


@pytest.mark.parametrize("c", [1.0, 2.0])
def test_many_step_sde_sampling_recovers_the_data_law(c):
    x1 = _noise(20000)
    x = sample(
        FlowMatching(),
        FlowOracle(),
        x1.shape,
        sampler="sde",
        num_steps=500,
        noise=x1,
        sde_diffusion=c,
        generator=torch.Generator().manual_seed(3),
    )
    _within(x, MU)
    _std_within(x, S, extra=0.01)  # Euler–Maruyama's O(Δt) bias in the variance
    assert (x - (MU + S * x1)).abs().mean() > 0.05  # genuinely stochastic: not the ODE's map


@pytest.mark.parametrize("sampler,order", [("euler", 1.0), ("heun", 2.0)])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_measured_order_of_convergence(sampler, order, shift):
    x1 = _noise(64)
    exact = MU + S * x1
    steps = [64, 128, 256]  # asymptotic regime (with shift 3 Heun's slope is still -2.5 at 8-16 steps)
    errors = []
    for k in steps:
        x = sample(FlowMatching(), FlowOracle(), x1.shape, sampler=sampler, num_steps=k, noise=x1, time_shift=shift)
        errors.append((x - exact).abs().max().item())
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(-slope - order) < 0.25, f"{sampler}: errors {errors}, slope {slope}"


def test_heun_calls_the_model_twice_per_step_and_euler_once():
    for sampler, calls in (("euler", 10), ("heun", 20), ("sde", 10)):
        oracle = FlowOracle()
        sample(
            FlowMatching(),
            oracle,
            (2, 1, 2, 2),
            sampler=sampler,
            num_steps=10,
            generator=torch.Generator().manual_seed(0),
        )
        assert oracle.calls == calls


def test_time_shift_is_sd3s_formula_and_keeps_the_ends():
    ts = fs.time_grid(4, shift=3.0)
    plain = torch.linspace(1, 0, 5, dtype=torch.float64)
    torch.testing.assert_close(ts, 3 * plain / (1 + 2 * plain))
    assert ts[0] == 1.0 and ts[-1] == 0.0 and bool((ts[1:] < ts[:-1]).all())
    assert torch.equal(fs.time_grid(4, 1.0), plain)


def test_sde_rows_depend_on_their_own_generator_only():
    x1 = _noise(4)

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    together = sample(
        FlowMatching(), FlowOracle(), x1.shape, sampler="sde", num_steps=6, noise=x1, generator=gens([10, 11, 12, 13])
    )
    alone = sample(
        FlowMatching(), FlowOracle(), x1[2:3].shape, sampler="sde", num_steps=6, noise=x1[2:3], generator=gens([12])
    )
    torch.testing.assert_close(together[2:3], alone, rtol=0, atol=0)
    other = sample(
        FlowMatching(), FlowOracle(), x1.shape, sampler="sde", num_steps=6, noise=x1, generator=gens([10, 11, 99, 13])
    )
    assert torch.equal(together[[0, 1, 3]], other[[0, 1, 3]]) and not torch.equal(together[2], other[2])


class _TwoClassOracle:
    """Class 0: data mean −1, class 1: +1, null class 2: mean 0 (the unconditional field here)."""

    def __call__(self, x, t_model, y):
        t = t_model.double() / TIME_SCALE
        mu = (y.double() * 2 - 1).masked_fill(y == 2, 0.0).reshape(-1, *([1] * (x.dim() - 1)))
        tb = t.reshape(-1, *([1] * (x.dim() - 1)))
        var = (1 - tb) ** 2 * S**2 + tb**2
        return -mu + (tb - (1 - tb) * S**2) / var * (x - (1 - tb) * mu)


@pytest.mark.parametrize("channels", ["all", "official"])
@pytest.mark.parametrize("interval", [None, (200, 600)])
def test_guided_flow_sampling_equals_the_hand_combined_field(channels, interval):
    """CFG (both channel modes) and its interval in model time 0..1000 wrap the flow samplers."""
    oracle, w = _TwoClassOracle(), 3.0
    x1 = _noise(4, shape=(4, 2, 2))  # 4 channels: "official" guides the first 3 only
    y = torch.tensor([0, 1, 1, 0])

    def by_hand(x, t_model, y):
        cond, uncond = oracle(x, t_model, y), oracle(x, t_model, torch.full_like(y, 2))
        guided = uncond + w * (cond - uncond)
        if channels == "official":
            guided[:, 3:] = cond[:, 3:]
        if interval is not None:
            inside = ((t_model >= interval[0]) & (t_model <= interval[1])).reshape(-1, 1, 1, 1)
            guided = torch.where(inside, guided, cond)
        return guided

    fn = guided_model_fn(oracle, w, null_label=2, channels=channels, interval=interval)
    for sampler in ("euler", "heun", "sde"):
        kw = dict(sampler=sampler, num_steps=7, noise=x1, model_kwargs={"y": y})
        a = sample(FlowMatching(), fn, x1.shape, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
        b = sample(
            FlowMatching(), by_hand, x1.shape, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw
        )
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    plain = sample(FlowMatching(), oracle, x1.shape, sampler="heun", num_steps=7, noise=x1, model_kwargs={"y": y})
    assert not torch.allclose(a, plain)  # guidance changed something


@pytest.mark.parametrize("m,s", [(0.0, 1.0), (-0.5, 0.7)])
def test_logit_normal_timesteps_follow_scipys_law(m, s):
    u = torch.rand(20000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t = logit_normal(u, m, s)
    # the map itself: sigmoid(m + s·Φ⁻¹(u)) with scipy's Φ⁻¹
    torch.testing.assert_close(t, torch.from_numpy(1 / (1 + np.exp(-(m + s * stats.norm.ppf(u.numpy()))))))
    # and the law: logit(t) ~ N(m, s²)
    logits = np.log(t.numpy()) - np.log1p(-t.numpy())
    assert stats.kstest(logits, stats.norm(loc=m, scale=s).cdf).pvalue > 1e-3
    assert stats.kstest(t.numpy(), lambda q: stats.norm.cdf((np.log(q) - np.log1p(-q) - m) / s)).pvalue > 1e-3


# x-prediction (JiT): the network outputs the clean image; for x_0 ~ N(μ, s²) its optimum is the
# posterior mean E[x_0 | x_t] = μ + (1 − t)s²/V_t · (x_t − (1 − t)μ), written here from the joint Gaussian.


def optimal_x0(x: torch.Tensor, t: torch.Tensor, mu=MU, s=S) -> torch.Tensor:
    """E[x_0 | x_t] for x_0 ~ N(mu, s²); t (N,) in [0, 1]."""
    t = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    var = (1 - t) ** 2 * s**2 + t**2
    return mu + (1 - t) * s**2 / var * (x - (1 - t) * mu)


class FlowX0Oracle(FlowOracle):
    """The optimal x-prediction network, called at model time t·1000: the posterior mean for t ≥ 0.05;
    below, the loss is on (x_t − x̂_0)/0.05, so its minimiser is x_t − 0.05·E[v | x_t]."""

    def __call__(self, x, t_model, y=None, **_):
        self.calls += 1
        t = t_model.double() / TIME_SCALE
        tb = t.reshape(-1, *([1] * (x.dim() - 1)))
        below = x - 0.05 * optimal_velocity(x, t, self.mu, self.s)
        return torch.where(tb >= 0.05, optimal_x0(x, t, self.mu, self.s), below)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9, 1.0])
def test_x_prediction_loss_of_the_optimal_network_is_the_conditional_variance_of_v(t):
    """Above the clip (t ≥ 0.05) the velocity an optimal x̂_0 stands for is the optimal velocity."""
    g = torch.Generator().manual_seed(4)
    x0 = MU + S * torch.randn((20000, 1, 2, 2), generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    tt = torch.full((x0.shape[0],), t, dtype=torch.float64)
    terms = FlowMatching(prediction="xstart").training_losses(FlowX0Oracle(), x0, tt, noise=noise)
    var = (1 - t) ** 2 * S**2 + t**2
    _within(terms["mse"], 1 + S**2 - (t - (1 - t) * S**2) ** 2 / var)


def test_x_prediction_loss_is_on_the_velocity_with_t_clipped_at_0_05():
    """A network that outputs x_0 exactly has v̂ = (x_t − x_0)/max(t, 0.05): zero loss above the clip,
    and below it the velocity is scaled by t/0.05, so the loss is (1 − t/0.05)²·E[v²]."""
    g = torch.Generator().manual_seed(5)
    x0 = MU + S * torch.randn((4000, 1, 2, 2), generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = FlowMatching(prediction="xstart")
    for t in (0.02, 0.3):
        tt = torch.full((x0.shape[0],), t, dtype=torch.float64)
        terms = exact.training_losses(lambda x, _t, **__: x0, x0, tt, noise=noise)
        expected = (1 - min(t / 0.05, 1.0)) ** 2 * ((noise - x0) ** 2).mean(dim=(1, 2, 3))
        torch.testing.assert_close(terms["mse"], expected)


@pytest.mark.parametrize("sampler,steps,gap", [("euler", 400, 0.02), ("heun", 50, 2e-3)])
def test_x_prediction_sampling_recovers_the_data_law_and_the_exact_map(sampler, steps, gap):
    """The samplers turn the optimal x̂_0 back into the optimal velocity: the same map as the v-model's."""
    x1 = _noise(20000)
    x = sample(FlowMatching(prediction="xstart"), FlowX0Oracle(), x1.shape, sampler=sampler, num_steps=steps, noise=x1)
    _within(x, MU)
    _std_within(x, S)
    torch.testing.assert_close(x, MU + S * x1, atol=gap, rtol=0)
