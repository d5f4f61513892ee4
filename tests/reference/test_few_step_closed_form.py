"""Few-step flow sampling against the exact ODE solution (Gaussian data, closed form).

For x_0 ~ N(μ, s²) the flow ODE maps noise x_1 to x_0 = μ + s·x_1 exactly (see
tests/reference/test_flow_closed_form.py, whose optimal x-prediction network is used here). The
few-step sampler ``heun-x0`` (Heun, last step the network's x̂_0; 2K − 1 calls) on a grid shifted
toward the data end (SD3's shift s < 1, the direction small images want) is measured against that
exact map, beside uniform Heun (2K calls) and Euler at the same calls.
"""

import pytest
import torch

from dit.diffusion import sample
from dit.diffusion.flow import TIME_SCALE, FlowMatching

from tests.reference.test_flow_closed_form import MU, S, FlowX0Oracle, optimal_x0

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _noise(n: int = 4000) -> torch.Tensor:
    return torch.randn((n, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def error(oracle, sampler: str, steps: int, shift: float) -> tuple[float, int]:
    """(max |x − (μ + s·x_1)|, model calls) of one sampler setting."""
    x1 = _noise()
    x = sample(FlowMatching("xstart"), oracle, x1.shape, sampler=sampler, num_steps=steps, noise=x1, time_shift=shift)
    return (x - (MU + S * x1)).abs().max().item(), oracle.calls


def test_heun_x0_calls_the_model_2k_minus_1_times_and_ends_on_its_x0():
    seen = {}

    class Fixed:
        calls = 0

        def __call__(self, x, t_model, y=None, **_):
            self.calls += 1
            seen["t"] = t_model
            return torch.full_like(x, 0.25)  # x̂_0 everywhere

    model = Fixed()
    x = sample(FlowMatching("xstart"), model, (3, 1, 2, 2), sampler="heun-x0", num_steps=4, noise=_noise(3))
    assert model.calls == 7
    torch.testing.assert_close(x, torch.full_like(x, 0.25), rtol=0, atol=1e-12)
    assert float(seen["t"][0]) > 0  # never called at t = 0


def test_shifted_heun_x0_beats_uniform_heun_and_euler_at_equal_calls():
    """Optimal network: 9 calls of heun-x0 on the 0.5-shifted grid are closer to the exact map than 10 of
    uniform Heun or 9 of Euler, and halving its step size shrinks the error further."""
    few, calls = error(FlowX0Oracle(), "heun-x0", 5, 0.5)
    assert calls == 9
    assert few < 0.6 * error(FlowX0Oracle(), "heun", 5, 1.0)[0]
    assert few < 0.1 * error(FlowX0Oracle(), "euler", 9, 1.0)[0]
    more, _ = error(FlowX0Oracle(), "heun-x0", 10, 0.5)
    assert more < few and more < error(FlowX0Oracle(), "heun", 10, 1.0)[0]


class UntrainedAtZero(FlowX0Oracle):
    """The posterior mean for t ≥ 0.05 and the input itself below: a network that never saw t near 0
    (logit-normal(0.5, 1) training draws t < 0.05 three times in 10⁴) and copies its input there."""

    def __call__(self, x, t_model, y=None, **_):
        self.calls += 1
        t = t_model.double() / TIME_SCALE
        keep = (t >= 0.05).reshape(-1, *([1] * (x.dim() - 1)))
        return torch.where(keep, optimal_x0(x, t, self.mu, self.s), x)


def test_the_x0_last_step_avoids_the_networks_untrained_end():
    """Uniform Heun's last corrector asks the network at t = 0; heun-x0 never does, so it keeps its accuracy."""
    heun, _ = error(UntrainedAtZero(), "heun", 10, 1.0)
    few, _ = error(UntrainedAtZero(), "heun-x0", 10, 0.5)
    assert heun > 0.05 and few < 0.01
