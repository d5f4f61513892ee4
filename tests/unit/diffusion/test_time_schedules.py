"""The flow samplers' step grids (``--time-schedule``): each schedule against its defining formula,
written here independently, and the cosine grid's ODE solution against the closed-form flow."""

import math

import numpy as np
import pytest
import torch

from dit.config.request import TIME_SCHEDULE_NAMES
from dit.diffusion import sample
from dit.diffusion.flow import FlowMatching
from dit.diffusion.flow_samplers import TIME_SCHEDULES, shift_time, time_grid
from tests.reference.test_flow_closed_form import MU, S, FlowOracle, _noise, _std_within, _within

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_command_lines_list_exactly_the_registered_schedules():
    assert list(TIME_SCHEDULE_NAMES) == list(TIME_SCHEDULES)


@pytest.mark.parametrize("k", [1, 4, 25])
def test_uniform_is_the_plain_grid(k):
    assert torch.equal(time_grid(k, 1.0, "uniform"), torch.linspace(1.0, 0.0, k + 1, dtype=torch.float64))


@pytest.mark.parametrize("k", [1, 4, 7, 25])
def test_cosine_takes_a_cosine_schedule_diffusions_uniform_steps(k):
    """At t_i, x_t = (1 − t)x_0 + tε has the signal share ᾱ = (1 − t)²/((1 − t)² + t²) that the cosine
    schedule ᾱ(τ) = cos²(πτ/2) has at τ_i = 1 − i/k (Nichol & Dhariwal 2021, without its offset)."""
    t = time_grid(k, 1.0, "cosine").numpy()
    assert t[0] == 1.0 and t[-1] == 0.0 and np.all(np.diff(t) < 0)
    tau = 1.0 - np.arange(k + 1) / k
    alpha_bar = (1 - t) ** 2 / ((1 - t) ** 2 + t**2)
    np.testing.assert_allclose(alpha_bar, np.cos(math.pi * tau / 2) ** 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t + t[::-1], 1.0, rtol=0, atol=1e-12)  # symmetric about t = 1/2
    if k >= 4:  # finer mid-way than at the ends (uniform steps are all 1/k)
        steps = -np.diff(t)
        assert steps[k // 2] < 1 / k < steps[0] and steps[0] == pytest.approx(steps[-1])


def test_the_time_shift_applies_to_any_schedule():
    base = TIME_SCHEDULES["cosine"](10)
    torch.testing.assert_close(time_grid(10, 3.0, "cosine"), shift_time(base, 3.0), rtol=0, atol=0)


@pytest.mark.parametrize("sampler,steps,gap", [("heun", 50, 2e-3), ("euler", 400, 0.02)])
def test_cosine_grid_ode_sampling_recovers_the_data_law_and_the_exact_map(sampler, steps, gap):
    x1 = _noise(20000)
    flow = FlowMatching()
    x = sample(flow, FlowOracle(), x1.shape, sampler=sampler, num_steps=steps, noise=x1, time_schedule="cosine")
    _within(x, MU)
    _std_within(x, S)
    torch.testing.assert_close(x, MU + S * x1, atol=gap, rtol=0)
    uniform = sample(flow, FlowOracle(), x1.shape, sampler=sampler, num_steps=steps, noise=x1)
    assert not torch.equal(x, uniform)  # the schedule reached the sampler
