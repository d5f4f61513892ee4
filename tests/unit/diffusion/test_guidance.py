"""Classifier-free guidance wrapper: the formula, the official 3-channel mode, the interval."""

import pytest
import torch

from dit.diffusion import create_diffusion
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion import sample
from dit.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NULL = 10
C = 4


class CondModel:
    """A class-conditional toy 'network' returning (N, 2C, H, W) that records its batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, t, y):
        self.batches.append(x.shape[0])
        yy = y.float().view(-1, 1, 1, 1)
        tt = t.float().view(-1, 1, 1, 1) / 1000.0
        eps = torch.tanh(x) * (1 + 0.1 * yy) + tt  # (N, C, H, W)
        var = torch.tanh(x + 0.05 * yy)  # (N, C, H, W)
        return torch.cat([eps, var], dim=1)


def _inputs(n=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, C, 4, 4, generator=g), torch.tensor([100, 500, 900][:n]), torch.tensor([1, 2, 3][:n])


def test_all_channels_guidance_formula():
    model, (x, t, y) = CondModel(), _inputs()
    out = guided_model_fn(model, 4.0, NULL)(x, t, y)
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, NULL))
    assert model.batches[0] == 2 * x.shape[0]  # cond and null rows in one forward
    torch.testing.assert_close(out[:, :C], uncond[:, :C] + 4.0 * (cond[:, :C] - uncond[:, :C]))
    torch.testing.assert_close(out[:, C:], cond[:, C:])  # the conditional rows' variance


def test_official_mode_guides_only_channels_0_to_2():
    """The official forward_with_cfg: guided ε on channels 0-2; channel 3 and Σ conditional."""
    model, (x, t, y) = CondModel(), _inputs()
    out = guided_model_fn(model, 4.0, NULL, channels="official")(x, t, y)
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, NULL))
    torch.testing.assert_close(out[:, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]))
    torch.testing.assert_close(out[:, 3:], cond[:, 3:], rtol=0, atol=0)
    assert not torch.allclose(out[:, 3], guided_model_fn(model, 4.0, NULL)(x, t, y)[:, 3])
    assert guided_model_fn(model, 4.0, NULL, channels="official").guidance == {
        "cfg_scale": 4.0,
        "channels": "official",
        "interval": None,
        "guided": True,
    }


def test_scale_one_equals_the_conditional_model_and_costs_one_pass():
    model, (x, t, y) = CondModel(), _inputs()
    torch.testing.assert_close(guided_model_fn(model, 1.0, NULL)(x, t, y), model(x, t, y), rtol=0, atol=0)
    assert model.batches == [3, 3]
    # The combine at a scale just above 1 tends to the conditional output (continuity in s).
    near = guided_model_fn(model, 1.0 + 1e-7, NULL)(x, t, y)
    torch.testing.assert_close(near, model(x, t, y), rtol=1e-5, atol=1e-5)


def test_guided_sampling_at_scale_one_equals_conditional_sampling():
    model = CondModel()
    x_T = torch.randn(2, C, 4, 4, generator=torch.Generator().manual_seed(1))
    kw = dict(sampler="ddpm", num_steps=10, noise=x_T, model_kwargs={"y": torch.tensor([1, 2])})
    guided = sample(
        create_diffusion(""),
        guided_model_fn(model, 1.0, NULL),
        x_T.shape,
        generator=torch.Generator().manual_seed(2),
        **kw,
    )
    plain = sample(create_diffusion(""), model, x_T.shape, generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(guided, plain, rtol=0, atol=0)


def test_interval_skips_the_null_rows_outside_it():
    model, (x, t, y) = CondModel(), _inputs()
    fn = guided_model_fn(model, 3.0, NULL, interval=(400, 950))
    out = fn(x, t, y)  # t = 100 is outside, 500 and 900 inside
    assert model.batches == [3 + 2]
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, NULL))
    torch.testing.assert_close(out[0], cond[0])
    torch.testing.assert_close(out[1:, :C], uncond[1:, :C] + 3.0 * (cond[1:, :C] - uncond[1:, :C]))
    model.batches.clear()
    fn(x, torch.tensor([0, 10, 399]), y)
    assert model.batches == [3]  # all rows outside: conditional only, half the cost


def test_unconditional_model_is_not_guided():
    calls = []
    model = lambda x, t, y: (calls.append(y), torch.zeros_like(x))[1]
    x, t, _ = _inputs()
    guided_model_fn(model, 4.0, None)(x, t)
    assert calls == [None]


def test_missing_labels_mean_the_null_class():
    model, (x, t, _) = CondModel(), _inputs()
    out = guided_model_fn(model, 4.0, NULL)(x, t)
    torch.testing.assert_close(out, model(x, t, torch.full((3,), NULL)))


def test_bad_guidance_settings_are_user_errors():
    with pytest.raises(UserError):
        guided_model_fn(CondModel(), cfg_scale=2.0, null_label=NULL, channels="first3")


@pytest.mark.parametrize("kw", [dict(cfg_scale=-1.0), dict(interval=(500, 100))])
def test_guidance_asserts_what_the_request_validated(kw):
    """A negative scale and an empty interval are refused by GenerationRequest.validate (one line, naming the
    setting); below that boundary they are broken invariants."""
    args = dict(cfg_scale=2.0, null_label=NULL) | kw
    with pytest.raises(AssertionError):
        guided_model_fn(CondModel(), **args)
