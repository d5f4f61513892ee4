"""EMA: the foreach update equals a direct per-tensor loop of d·ema + (1−d)·θ; fp32; plain keys."""

import copy
import math

import pytest
import torch
from torch import nn

from dit.train.ema import EMA, EMASchedule, ema_decay, power_from_std, std_from_power


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


# ---------------------------------------------------------------------------------------------
# Short-run schedules against their closed-form weights (computed independently in float64)
# ---------------------------------------------------------------------------------------------


def _sequence(n_updates: int, seed: int = 0):
    """θ_0 (initial) and θ_1..θ_T as float64 vectors, plus a 1-parameter model stepping through them."""
    g = torch.Generator().manual_seed(seed)
    thetas = torch.randn(n_updates + 1, 5, generator=g, dtype=torch.float64)  # (T+1, 5)
    net = nn.Linear(5, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(thetas[0].float()[None])
    return thetas, net


def _run_ema(schedule, thetas, net):
    ema = EMA(net, schedule=schedule)
    for t in range(1, len(thetas)):
        with torch.no_grad():
            net.weight.copy_(thetas[t].float()[None])
        ema.update(net)
    return ema.params["weight"][0].double()  # (5,)


@pytest.mark.parametrize("gamma", [0.0, 1.5, 6.94])
def test_power_ema_equals_its_closed_form_weighted_average(gamma):
    """β_t = (1−1/t)^(γ+1) ⇒ ema_T = Σ_t w_t θ_t, w_t = (t^(γ+1) − (t−1)^(γ+1)) / T^(γ+1)."""
    T = 40
    thetas, net = _sequence(T)
    got = _run_ema(EMASchedule(kind="power", power=gamma), thetas, net)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    w = (t ** (gamma + 1) - (t - 1) ** (gamma + 1)) / T ** (gamma + 1)  # (T,)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)  # the initial weights carry nothing
    torch.testing.assert_close(got, (w[:, None] * thetas[1:]).sum(0), rtol=0, atol=2e-6)
    if gamma == 0.0:  # γ = 0 is the plain running mean
        torch.testing.assert_close(got, thetas[1:].mean(0), rtol=0, atol=2e-6)


def test_power_ema_profile_is_proportional_to_t_pow_gamma_with_the_stated_width():
    """For large T the weights approach (γ+1) t^γ / T^(γ+1), whose relative std is std_from_power(γ)."""
    sched = EMASchedule(kind="power", power=power_from_std(0.10))
    T = 20_000
    beta = torch.tensor([sched.decay_at(n) for n in range(T)], dtype=torch.float64)  # (T,)
    # w_t = (1 − β_t) ∏_{s>t} β_s, by a reversed cumulative product (independent of the closed form)
    tail = torch.cat([torch.flip(torch.cumprod(torch.flip(beta[1:], [0]), 0), [0]), torch.ones(1, dtype=torch.float64)])
    w = (1 - beta) * tail
    t = torch.arange(1, T + 1, dtype=torch.float64)
    shape = (sched.power + 1) * t**sched.power / T ** (sched.power + 1)
    # t^(γ+1) − (t−1)^(γ+1) = (γ+1) t^γ (1 − γ/(2t) + O(t⁻²)): the relative gap shrinks like γ/(2t)
    late = slice(99, None)  # t ≥ 100
    assert bool(((w[late] / shape[late] - 1).abs() <= sched.power / t[late]).all())
    x = t / T
    mean = (w * x).sum()
    std = (w * (x - mean) ** 2).sum().sqrt().item()  # σ_rel: the profile's std in units of the run length
    assert std == pytest.approx(0.10, rel=1e-3)
    assert std_from_power(power_from_std(0.05)) == pytest.approx(0.05, rel=1e-9)


@pytest.mark.parametrize("rampup", [0.05, 0.5, None])
def test_halflife_ema_equals_a_direct_product_of_decays(rampup):
    """EDM: h_n = min(H, ratio·n·B) images, β_n = 2^(−B/h_n); ema = Σ_t (1−β_t)∏_{s>t}β_s θ_t + ∏β θ_0."""
    T, B, H = 30, 8, 0.1  # H in kimg: 100 images, reached by the ramp-up (0.5) at n = 25
    thetas, net = _sequence(T, seed=1)
    got = _run_ema(EMASchedule(kind="halflife", halflife_kimg=H, rampup_ratio=rampup, batch_size=B), thetas, net)
    betas = []
    for n in range(T):
        h = H * 1000.0 if rampup is None else min(H * 1000.0, rampup * n * B)
        betas.append(math.exp(-math.log(2.0) * B / h) if h > 0 else 0.0)
    ref = thetas[0].clone()
    for n, b in enumerate(betas):
        ref = b * ref + (1 - b) * thetas[n + 1]
    # and the same as an explicit weighted sum (weights from the product of decays)
    weights = [(1 - betas[n]) * math.prod(betas[n + 1 :]) for n in range(T)]
    direct = math.prod(betas) * thetas[0] + sum(w * thetas[n + 1] for n, w in enumerate(weights))
    torch.testing.assert_close(ref, direct, rtol=0, atol=1e-12)
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)
    if rampup is not None:
        assert betas[0] == 0.0  # update 0 has half-life 0: the EMA starts from the trained weights


def test_halflife_means_half_the_weight_after_that_many_images():
    sched = EMASchedule(kind="halflife", halflife_kimg=0.64, rampup_ratio=None, batch_size=64)
    assert sched.initial_weight(10) == pytest.approx(0.5)  # 10 updates × 64 images = 640 images


def test_initial_weight_is_the_product_of_decays():
    paper = EMASchedule()  # constant 0.9999 from step 0
    assert paper.initial_weight(500) == pytest.approx(math.prod([0.9999] * 500))
    assert paper.initial_weight(500) > 0.95
    warm = EMASchedule(decay=0.999, warmup=True)
    assert warm.initial_weight(7) == pytest.approx(math.prod(min(0.999, (1 + n) / (10 + n)) for n in range(7)))
    assert EMASchedule(kind="power").initial_weight(3) == 0.0
    assert EMASchedule(kind="halflife").initial_weight(1) == 0.0


def test_constant_schedule_is_the_paper_decay_bit_for_bit():
    assert all(EMASchedule().decay_at(n) == 0.9999 for n in (0, 1, 10**6))
    assert EMA(_net(), decay=0.99).schedule == EMASchedule(decay=0.99)


def test_schedule_from_config_and_its_validation():
    from dit.config import TrainConfig
    from dit.errors import UserError

    cfg = TrainConfig(ema_type="power", ema_std=0.05, global_batch_size=32)
    sched = EMASchedule.from_config(cfg)
    assert (sched.kind, sched.batch_size) == ("power", 32)
    assert std_from_power(sched.power) == pytest.approx(0.05)
    for bad in (
        dict(ema_type="box"),
        dict(ema_std=0.5),
        dict(ema_rampup_ratio=0.0),
        dict(betas=(0.9, 1.0)),
        dict(ema_halflife_kimg=float("nan")),
        dict(ema_decay=1.5),
    ):
        with pytest.raises(UserError):
            TrainConfig(**bad).validate_optimiser()
