"""The functional sampler interface: determinism, per-row generators, callbacks, errors."""

import pytest
import torch

from dit.diffusion import create_diffusion
from dit.diffusion import sample
from dit.diffusion.registry import SAMPLERS as REGISTRY
from dit.diffusion.registry import names_for
from dit.errors import UserError
from dit.runtime.rng import example_generators
from tests.reference.diffusion_oracle import linear_alphas_cumprod

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SAMPLERS = names_for("gaussian")
STOCHASTIC = {name for name in SAMPLERS if REGISTRY[name].stochastic({})}  # at their default options

SHAPE = (4, 2, 4, 4)


def toy_model(x, t, y=None):
    tt = t.float().view(-1, 1, 1, 1) / 1000.0
    return torch.cat([0.5 * torch.tanh(x) + tt, torch.tanh(x + tt)], dim=1)  # (N, 2C, H, W)


def _run(sampler, gens, **kw):
    shape = (len(gens),) + SHAPE[1:] if isinstance(gens, list) else SHAPE
    return sample(create_diffusion(""), toy_model, shape, sampler=sampler, num_steps=8, generator=gens, **kw)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_deterministic_under_a_seed(sampler):
    a = _run(sampler, torch.Generator().manual_seed(7))
    b = _run(sampler, torch.Generator().manual_seed(7))
    c = _run(sampler, torch.Generator().manual_seed(8))
    assert a.shape == SHAPE and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 1.0), ("dpm++2m", 0.0)])
def test_per_row_generators_make_rows_independent_of_the_batch(sampler, eta):
    """Row i depends on generator i only: a batch of rows 2-3 reproduces rows 2-3 of a batch of 4."""
    kw = {"eta": eta} if sampler == "ddim" else {}  # the one sampler with an η
    full = _run(sampler, example_generators(5, [0, 1, 2, 3]), **kw)
    part = _run(sampler, example_generators(5, [2, 3]), **kw)
    torch.testing.assert_close(part, full[2:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_step_noise_comes_from_the_generator_exactly_for_the_stochastic_samplers(sampler):
    """Same x_T, different step generators: samples differ iff the sampler is listed in STOCHASTIC."""
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    a, b = (
        sample(
            create_diffusion(""), toy_model, SHAPE, sampler, 8, noise=x_T, generator=torch.Generator().manual_seed(s)
        )
        for s in (1, 2)
    )
    assert torch.equal(a, b) == (sampler not in STOCHASTIC)
    assert "ddpm" in STOCHASTIC


def _ddpm_by_hand(x_T, generator, num_steps, T=1000):
    """Ancestral sampling written from the formulas (ADM's even spacing, learned-range Σ), float64.

    kept_i = round(i·(T−1)/(K−1)); ᾱ' = ᾱ[kept]; β'_i = 1 − ᾱ'_i/ᾱ'_{i−1}; x̂_0 from ε; posterior mean
    c1·x̂_0 + c2·x_t; log Σ = f·log β' + (1−f)·log β̃' with f = (v+1)/2 and log β̃' at the first kept step
    clipped to the second's; noise from ``generator`` every step, none added at the last.
    """
    ac_all = torch.from_numpy(linear_alphas_cumprod(T))
    kept = [round(i * (T - 1) / (num_steps - 1)) for i in range(num_steps)]
    ac = ac_all[kept]
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    beta = 1 - ac / ac_prev
    beta_tilde = beta * (1 - ac_prev) / (1 - ac)
    log_beta_tilde = torch.log(torch.cat([beta_tilde[1:2], beta_tilde[1:]]))
    x = x_T.double()
    for i in reversed(range(num_steps)):
        t = torch.full((x.shape[0],), kept[i])
        out = toy_model(x.float(), t).double()
        eps, v = out[:, : x.shape[1]], out[:, x.shape[1] :]
        x0 = (x - torch.sqrt(1 - ac[i]) * eps) / torch.sqrt(ac[i])
        mean = (
            torch.sqrt(ac_prev[i]) * beta[i] / (1 - ac[i]) * x0
            + torch.sqrt(1 - beta[i]) * (1 - ac_prev[i]) / (1 - ac[i]) * x
        )
        frac = (v + 1) / 2
        log_var = frac * torch.log(beta[i]) + (1 - frac) * log_beta_tilde[i]
        noise = torch.randn(x.shape, generator=generator).double()
        x = mean + (i > 0) * torch.exp(0.5 * log_var) * noise
    return x


def test_functional_ddpm_equals_the_formulas_written_out():
    """`sample(..., "ddpm")` against an ancestral loop written here from the formulas (not ADM's loop)."""
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    ours = sample(
        create_diffusion(""),
        toy_model,
        SHAPE,
        "ddpm",
        num_steps=25,
        noise=x_T,
        generator=torch.Generator().manual_seed(1),
    )
    ref = _ddpm_by_hand(x_T, torch.Generator().manual_seed(1), num_steps=25)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-4)


def test_ddim_falls_back_to_even_spacing():
    seen = []
    model = lambda x, t: (seen.append(int(t[0])), toy_model(x, t))[1]
    # no fixed stride gives 30 of 100 steps (stride 3 → 34, 4 → 25)
    sample(create_diffusion("", diffusion_steps=100), model, SHAPE, "ddim", num_steps=30, noise=torch.zeros(SHAPE))
    assert len(seen) == 30 and seen[0] == 99 and seen[-1] == 0


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_callback_sees_every_step_and_progress_bar_runs(sampler, capsys):
    calls = []
    out = _run(
        sampler,
        torch.Generator().manual_seed(0),
        progress=True,
        callback=lambda i, t, x, x0: calls.append((i, t, x.shape, x0.shape)),
    )
    assert [c[0] for c in calls] == list(range(8))
    assert calls[0][1] == 999 or sampler == "ddim" and calls[0][1] > 800
    assert calls[-1][1] == 0 and all(c[2] == c[3] == SHAPE for c in calls)
    assert "8/8" in capsys.readouterr().err
    assert out.shape == SHAPE


def test_progressive_loops_yield_every_step():
    d = create_diffusion("10")
    steps = list(d.p_sample_loop_progressive(toy_model, SHAPE, noise=torch.zeros(SHAPE)))
    assert len(steps) == 10 and set(steps[0]) == {"sample", "pred_xstart"}
    steps = list(d.ddim_sample_loop_progressive(toy_model, SHAPE, noise=torch.zeros(SHAPE)))
    assert len(steps) == 10


def test_bad_sampler_arguments_are_user_errors():
    with pytest.raises(UserError, match="unknown sampler"):
        _run("euler", None)
    with pytest.raises(UserError, match=">= 1"):
        sample(create_diffusion(""), toy_model, SHAPE, "dpm++2m", num_steps=0)


def test_dpm_solver_uses_only_the_eps_channels_and_num_steps_calls():
    calls = []

    def model(x, t):
        calls.append(int(t[0]))
        out = toy_model(x, t)
        return torch.cat([out[:, :2], torch.full_like(x, float("nan"))], 1)  # variance channels ignored

    out = sample(create_diffusion(""), model, SHAPE, "dpm++2m", num_steps=12, noise=torch.randn(SHAPE))
    assert len(calls) == 12 and torch.isfinite(out).all()


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m", "ddpm"])
@pytest.mark.parametrize("prediction_type", ["xstart", "v"])
def test_x0_and_v_models_sample_like_the_equivalent_eps_model(sampler, prediction_type):
    """An x_0- or v-model that encodes the same prediction as an ε-model gives the same samples."""
    ac = create_diffusion("").alphas_cumprod.float()

    def eps_model(x, t):
        return toy_model(x, t)[:, :2]

    def other_model(x, t):
        a, b = (ac[t].sqrt().view(-1, 1, 1, 1), (1 - ac[t]).sqrt().view(-1, 1, 1, 1))
        eps = eps_model(x, t)
        x0 = (x - b * eps) / a
        return x0 if prediction_type == "xstart" else a * eps - b * x0

    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    kw = dict(sampler=sampler, num_steps=6, noise=x_T)
    ref = sample(
        create_diffusion("", learn_sigma=False), eps_model, SHAPE, generator=torch.Generator().manual_seed(4), **kw
    )
    got = sample(
        create_diffusion("", learn_sigma=False, prediction_type=prediction_type),
        other_model,
        SHAPE,
        generator=torch.Generator().manual_seed(4),
        **kw,
    )
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
