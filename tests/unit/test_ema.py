"""EMA: the foreach update equals a direct per-tensor loop of d·ema + (1−d)·θ; fp32; plain keys."""

import copy

import pytest
import torch
from torch import nn

from dit.train.ema import EMA, ema_decay


def _net(dtype=torch.float32):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).to(dtype)
    return net


def _perturb(net, k):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(k)).to(p.dtype) * 0.1)
        net[1].running_mean.add_(float(k))


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_matches_direct_loop(warmup):
    net = _net()
    ema = EMA(net, decay=0.9, warmup=warmup)
    ref = {k: v.detach().clone().double() for k, v in net.named_parameters()}
    for n in range(6):
        _perturb(net, n)
        used = ema.update(net)
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        assert used == pytest.approx(d)
        for k, p in net.named_parameters():
            ref[k] = d * ref[k] + (1 - d) * p.detach().double()
    for k, v in ref.items():
        torch.testing.assert_close(ema.params[k].double(), v, rtol=0, atol=1e-6)
    # buffers are copied, not averaged
    assert torch.equal(ema.buffers["1.running_mean"], net[1].running_mean)
    assert ema.num_updates == 6


def test_warmup_formula_and_cap():
    assert ema_decay(0.9999, 0, True) == pytest.approx(0.1)
    assert ema_decay(0.9999, 10, True) == pytest.approx(11 / 20)
    assert ema_decay(0.9999, 10**7, True) == pytest.approx(0.9999)
    assert ema_decay(0.9999, 3, False) == 0.9999


def test_ema_is_fp32_for_bf16_model_and_copies_back():
    net = _net(torch.bfloat16)
    ema = EMA(net, decay=0.5)
    assert all(v.dtype == torch.float32 for v in ema.params.values())
    _perturb(net, 1)
    ema.update(net)
    target = _net()
    ema.copy_to(target)
    for k, p in target.named_parameters():
        torch.testing.assert_close(p, ema.params[k])


def test_state_dict_round_trip_and_keys_equal_model_keys():
    net = _net()
    ema = EMA(net, decay=0.99)
    _perturb(net, 2)
    ema.update(net)
    assert set(ema.state_dict()) == set(net.state_dict())
    assert not any(k.startswith("module.") for k in ema.state_dict())
    other = EMA(_net(), decay=0.99)
    other.load_state_dict(copy.deepcopy(ema.state_dict()), num_updates=ema.num_updates)
    for k, v in ema.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    with pytest.raises(KeyError):
        other.load_state_dict({"nope": torch.zeros(1)})
