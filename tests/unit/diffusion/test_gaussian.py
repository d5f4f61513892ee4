"""GaussianDiffusion pieces against direct derivations (Bayes' rule, parameterisation algebra)."""

import numpy as np
import pytest
import torch

from dit.diffusion import ModelVarType, create_diffusion
from dit.errors import UserError

X64 = dict(dtype=torch.float64)


def _x(shape=(3, 2, 4, 4), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), **X64)


def test_posterior_matches_bayes_rule():
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): product of two Gaussians in x_{t-1}."""
    d = create_diffusion("")
    betas = np.linspace(1e-4, 0.02, 1000)
    ac = np.cumprod(1 - betas)
    x0, xt = _x(), _x(seed=1)
    for t in (1, 10, 500, 999):
        # q(x_t | x_{t-1}) = N(√α x_{t-1}, β) → as a Gaussian in x_{t-1}: mean x_t/√α, var β/α
        a = 1 - betas[t]
        prec = a / betas[t] + 1 / (1 - ac[t - 1])
        mean = (np.sqrt(a) / betas[t] * xt + np.sqrt(ac[t - 1]) / (1 - ac[t - 1]) * x0) / prec
        m, v, logv = d.q_posterior_mean_variance(x0, xt, torch.full((3,), t))
        torch.testing.assert_close(m, mean, rtol=1e-9, atol=1e-12)
        assert v.flatten()[0].item() == pytest.approx(1 / prec, rel=1e-9)
        assert logv.flatten()[0].item() == pytest.approx(np.log(1 / prec), rel=1e-9)


def test_posterior_log_variance_is_clipped_at_t0():
    d = create_diffusion("")
    assert d.posterior_variance[0] == 0
    assert d.posterior_log_variance_clipped[0] == torch.log(d.posterior_variance[1])


def test_parameterisation_round_trips():
    d = create_diffusion("")
    x0, eps = _x(), _x(seed=1)
    t = torch.tensor([0, 300, 999])
    xt = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.predict_xstart_from_eps(xt, t, eps), x0)
    torch.testing.assert_close(d.predict_eps_from_xstart(xt, t, x0), eps)
    torch.testing.assert_close(d.predict_xstart_from_v(xt, t, d.v_target(x0, t, eps)), x0)
    ac = d.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, ac.sqrt() * x0 + (1 - ac).sqrt() * eps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "xstart", "v"])
def test_a_perfect_model_has_zero_mse_for_each_prediction_type(prediction_type):
    d = create_diffusion("", prediction_type=prediction_type, learn_sigma=False)
    x0, eps = _x(), _x(seed=1)
    t = torch.tensor([0, 300, 999])

    def perfect(x, tt):
        return {"epsilon": eps, "xstart": x0, "v": d.v_target(x0, tt, eps)}[prediction_type]

    terms = d.training_losses(perfect, x0, t, noise=eps)
    assert set(terms) == {"loss", "mse"}
    torch.testing.assert_close(terms["mse"], torch.zeros(3, **X64), atol=1e-20, rtol=0)
    out = d.p_mean_variance(perfect, d.q_sample(x0, t, eps), t, clip_denoised=False)
    torch.testing.assert_close(out["pred_xstart"], x0)


def test_predict_xstart_flag_is_the_official_switch():
    assert create_diffusion("", predict_xstart=True).model_mean_type.value == "xstart"
    with pytest.raises(UserError, match="prediction type"):
        create_diffusion("", prediction_type="score")


def test_learned_range_endpoints_and_fixed_variances():
    x = _x((2, 1, 2, 2))
    t = torch.tensor([0, 500])
    eps = torch.zeros_like(x)
    d = create_diffusion("")
    for v, table in ((1.0, torch.log(d.betas)), (-1.0, d.posterior_log_variance_clipped)):
        out = d.p_mean_variance(lambda x, tt: torch.cat([eps, torch.full_like(x, v)], 1), x, t)  # noqa: B023 (called now)
        torch.testing.assert_close(out["log_variance"][:, 0, 0, 0], table[t])
    small = create_diffusion("", learn_sigma=False, sigma_small=True)
    large = create_diffusion("", learn_sigma=False)
    assert small.model_var_type == ModelVarType.FIXED_SMALL and large.model_var_type == ModelVarType.FIXED_LARGE
    lv_small = small.p_mean_variance(lambda x, tt: eps, x, t)["log_variance"][:, 0, 0, 0]
    lv_large = large.p_mean_variance(lambda x, tt: eps, x, t)["log_variance"][:, 0, 0, 0]
    torch.testing.assert_close(lv_small, small.posterior_log_variance_clipped[t])
    torch.testing.assert_close(lv_large, torch.log(torch.stack([small.posterior_variance[1], small.betas[500]])))


def test_vb_term_trains_only_the_variance_channels():
    """ε is detached inside L_vlb: d(loss)/d(ε) = d(mse)/d(ε); the variance gets vb's gradient."""
    d = create_diffusion("")
    x0, noise = _x(), _x(seed=1)
    t = torch.tensor([0, 5, 700])
    eps_p = torch.zeros_like(x0, requires_grad=True)
    var_p = torch.zeros_like(x0, requires_grad=True)
    terms = d.training_losses(lambda x, tt: torch.cat([eps_p, var_p], 1), x0, t, noise=noise)
    terms["loss"].sum().backward()
    torch.testing.assert_close(eps_p.grad, -2 * noise / noise[0].numel())  # from mse only
    assert var_p.grad.abs().sum() > 0


def test_rescaled_learned_sigmas_scales_vb():
    x0, noise = _x(), _x(seed=1)
    t = torch.tensor([1, 2, 3])
    model = lambda x, tt: torch.cat([0.9 * noise, torch.zeros_like(x)], 1)
    plain = create_diffusion("").training_losses(model, x0, t, noise=noise)
    scaled = create_diffusion("", rescale_learned_sigmas=True, diffusion_steps=500)
    scaled_terms = scaled.training_losses(model, x0, t, noise=noise)
    assert scaled.num_timesteps == 500 and torch.isfinite(scaled_terms["vb"]).all()
    torch.testing.assert_close(plain["mse"], scaled_terms["mse"])


def test_respaced_model_sees_original_timesteps():
    seen = []

    def model(x, t):
        seen.append(t.clone())
        return torch.cat([torch.zeros_like(x), torch.zeros_like(x)], 1)

    d = create_diffusion("ddim10")
    d.ddim_sample_loop(model, (1, 1, 2, 2), noise=torch.zeros(1, 1, 2, 2))
    assert [s.item() for s in seen] == list(range(900, -1, -100))
    seen.clear()
    d.training_losses(model, torch.zeros(2, 1, 2, 2), torch.tensor([0, 9]))
    assert seen[0].tolist() == [0, 900]


def test_learned_sigma_needs_twice_the_channels():
    d = create_diffusion("")
    with pytest.raises(AssertionError, match="2C"):
        d.p_mean_variance(lambda x, t: x, torch.zeros(1, 4, 2, 2), torch.tensor([3]))


def test_clip_denoised_clamps_pred_xstart():
    d = create_diffusion("")
    x = torch.full((1, 1, 2, 2), 5.0)
    model = lambda x, t: torch.cat([torch.zeros_like(x), torch.zeros_like(x)], 1)
    t = torch.tensor([10])
    assert d.p_mean_variance(model, x, t)["pred_xstart"].max() == 1.0
    assert d.p_mean_variance(model, x, t, clip_denoised=False)["pred_xstart"].max() > 4.0
