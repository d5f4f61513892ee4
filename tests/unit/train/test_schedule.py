"""dit.train.schedule.learning_rate: the paper's constant lr, linear warm-up, cosine decay (values by hand)."""

import math

import pytest

from dit.config import TrainConfig
from dit.train.schedule import learning_rate


def test_the_papers_recipe_is_a_constant_1e_4():
    cfg = TrainConfig(max_steps=400_000)
    assert [learning_rate(cfg, s) for s in (0, 1, 1000, 399_999, 10**7)] == [1e-4] * 5


def test_linear_warmup_reaches_the_lr_on_its_last_step_then_stays():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, max_steps=100)
    got = [learning_rate(cfg, s) for s in range(6)]
    assert got == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rel=1e-12)


def test_cosine_after_warmup_halves_at_the_midpoint_and_ends_at_zero():
    cfg = TrainConfig(lr=2.0, warmup_steps=10, lr_schedule="cosine", max_steps=110)  # 100 cosine steps
    assert learning_rate(cfg, 9) == pytest.approx(2.0)  # last warm-up step
    assert learning_rate(cfg, 10) == pytest.approx(2.0)  # cos(0) = 1
    assert learning_rate(cfg, 35) == pytest.approx(1.0 + math.sqrt(0.5))  # a quarter: (1 + cos(π/4)) / 2 · 2
    assert learning_rate(cfg, 60) == pytest.approx(1.0)  # halfway
    assert learning_rate(cfg, 110) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(cfg, 500) == pytest.approx(0.0, abs=1e-15)  # past max_steps: stays at 0
    values = [learning_rate(cfg, s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # never rises
