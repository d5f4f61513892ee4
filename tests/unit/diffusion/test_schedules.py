"""Schedules and respacing against closed forms and the ADM/diffusers spacing rules."""

import math

import numpy as np
import pytest

from dit.diffusion import create_diffusion
from dit.diffusion.schedules import cosine_betas, get_named_beta_schedule, linear_betas, respaced_betas, space_timesteps
from dit.errors import UserError


def test_linear_schedule_is_ddpm_and_scales_with_T():
    b = linear_betas(1000)
    assert b.dtype == np.float64 and b.shape == (1000,)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999)
    b100 = linear_betas(100)
    assert b100[0] == pytest.approx(1e-3) and b100[-1] == pytest.approx(0.2)


def test_cosine_alpha_bar_is_the_closed_form():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    ac = np.cumprod(1 - cosine_betas(T))
    expected = np.array([f(t + 1) / f(0) for t in range(T)])
    unclipped = cosine_betas(T) < 0.999
    np.testing.assert_allclose(ac[:-1][unclipped[:-1]], expected[:-1][unclipped[:-1]], rtol=1e-9)
    assert cosine_betas(T).max() <= 0.999


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(UserError, match="noise schedule"):
        get_named_beta_schedule("quadratic", 10)


def test_even_spacing_equals_linspace_rounding():
    """ADM's "250" is diffusers' timestep_spacing="linspace" rounding of 0..999."""
    assert sorted(space_timesteps(1000, "250")) == np.linspace(0, 999, 250).round().astype(int).tolist()
    assert space_timesteps(1000, 250) == space_timesteps(1000, "250")
    assert space_timesteps(1000, "") == set(range(1000)) == space_timesteps(1000, None)


def test_section_spacing():
    """'10,15,20' over 300 steps: each 100-step section evenly, both ends included (ADM docstring).

    ADM accumulates a float stride, so an exact .5 (e.g. 149.5) may round either way: each step
    must be within 0.5 of the evenly spaced value."""
    got = sorted(space_timesteps(300, "10,15,20"))
    ideal = np.concatenate([np.linspace(s, s + 99, c) for s, c in [(0, 10), (100, 15), (200, 20)]])
    assert len(got) == 45 and {0, 99, 100, 199, 200, 299} <= set(got)
    assert np.abs(np.array(got) - ideal).max() <= 0.5 + 1e-9
    assert space_timesteps(300, [10, 15, 20]) == set(got)


def test_ddim_spacing_is_a_fixed_stride():
    assert sorted(space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))
    assert sorted(space_timesteps(1000, "ddim30")) == list(range(0, 1000, 34))
    with pytest.raises(UserError, match="stride"):
        space_timesteps(1000, "ddim300")


@pytest.mark.parametrize("bad", ["abc", "ddimx", "0", "2000", "10,,5"])
def test_bad_respacing_is_a_user_error(bad):
    with pytest.raises(UserError):
        space_timesteps(1000, bad)


def test_respaced_process_keeps_alpha_bar_at_kept_steps():
    base = linear_betas(1000)
    kept = sorted(space_timesteps(1000, "10,10,5"))
    new_betas, tmap = respaced_betas(base, kept)
    assert tmap == kept and len(new_betas) == 25
    np.testing.assert_allclose(np.cumprod(1 - new_betas), np.cumprod(1 - base)[kept], rtol=1e-12)
    d = create_diffusion("10,10,5")
    assert d.num_timesteps == 25 and d.timestep_map.tolist() == kept
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), np.cumprod(1 - base)[kept], rtol=1e-12)
