"""dit.study.grid: the grid's runs (each once, in every sub-grid it belongs to) and their cost bookkeeping,
checked against dit.models.flops and a model actually built."""

import math

import pytest
import torch

from dit.config import DiffusionConfig, ModelConfig
from dit.diffusion import build_objective
from dit.diffusion.registry import SAMPLERS, sample
from dit.models import build_model
from dit.models.flops import count_params, forward_macs
from dit.study.grid import expand, model_calls_per_image, sampler_calls
from dit.study.spec import StudySpec


def spec(**kw) -> StudySpec:
    return StudySpec.from_dict({"steps": 120, **kw})


def test_a_grid_is_the_cartesian_product_of_its_axes():
    axes = dict(models=["d2-w32-h2", "d2-w64-h2"], patch_sizes=[2, 4], blocks=["adaln", "in-context"], seeds=[0, 1, 2])
    runs = expand(spec(**axes))
    assert len(runs) == 2 * 2 * 2 * 3 == len({r.id for r in runs})
    assert [r.seed for r in runs] == sorted(r.seed for r in runs)  # every variant's first seed first
    assert len({r.variant for r in runs}) == 8


def test_sub_grids_share_their_common_runs():
    s = spec(
        seeds=[0, 1],
        grids=[
            {"name": "designs", "models": ["d2-w32-h2"], "blocks": ["adaln-zero", "adaln", "cross-attn", "in-context"]},
            {"name": "sizes", "models": ["d2-w32-h2", "d2-w64-h2", "d4-w64-h2"]},
        ],
    )
    runs = expand(s)
    assert len(runs) == (4 + 3 - 1) * 2  # the base model with adaLN-Zero is in both grids, trained once
    shared = [r for r in runs if r.grids == ("designs", "sizes")]
    assert {r.id for r in shared} == {"d2-w32-h2-p4-adaln-zero-fast-s0", "d2-w32-h2-p4-adaln-zero-fast-s1"}


@pytest.mark.parametrize("recipe, learn_sigma", [("fast", False), ("paper", True)])
@pytest.mark.parametrize("block", ["adaln-zero", "cross-attn", "in-context"])
def test_costs_match_the_model_dit_train_builds(recipe, learn_sigma, block):
    (run,) = expand(spec(models=["d2-w32-h2"], blocks=[block], recipes=[recipe], batch_size=8, cfg_scale=1.5))
    cfg = ModelConfig(
        name=None, input_size=16, in_channels=3, num_classes=10, depth=2, hidden_size=32, num_heads=2,
        patch_size=4, block=block, learn_sigma=learn_sigma,
    )  # fmt: skip
    model = build_model(cfg)
    assert run.params == sum(p.numel() for p in model.parameters()) == count_params(cfg)
    macs = forward_macs(cfg)
    assert run.gflops == macs / 1e9
    assert run.train_flops_per_step == 6 * macs * 8  # 2 FLOPs per MAC, backward = 2 forwards, batch 8
    sampler_calls = 19 if recipe == "fast" else 10  # heun-x0: 2 model calls a step, 1 for the last; dpm++2m: 1
    assert run.model_calls_per_image == sampler_calls * 2  # guidance: conditional + unconditional
    assert run.sampling_flops_per_image == 2 * macs * run.model_calls_per_image


def test_budgets_become_steps():
    per_step = expand(spec(models=["d2-w32-h2"]))[0].train_flops_per_step
    (r,) = expand(StudySpec.from_dict({"images": 1000, "batch_size": 32, "models": ["d2-w32-h2"]}))
    assert r.max_steps == math.ceil(1000 / 32)
    (r,) = expand(StudySpec.from_dict({"flops": 10.5 * per_step, "models": ["d2-w32-h2"]}))
    assert r.max_steps == 10 and r.max_steps * r.train_flops_per_step <= 10.5 * per_step
    (r,) = expand(StudySpec.from_dict({"minutes": 2.0, "ckpt_every": 50, "models": ["d2-w32-h2"]}))
    assert r.max_steps is None and r.max_minutes == 2.0 and r.ckpt_every == 50


def test_checkpoint_spacing():
    assert expand(spec(evaluations=4))[0].ckpt_every == 30
    (r,) = expand(spec(eval_steps=[100, 200, 400, 120]))
    assert r.ckpt_every == 20 and r.eval_steps == (100, 120, 200, 400)


def test_model_calls():
    assert model_calls_per_image("heun", 10, 2.0) == 40
    assert model_calls_per_image("ddim", 25, 1.0) == 25


@pytest.mark.parametrize("objective, name", [(s.objective, name) for name, s in SAMPLERS.items()])
def test_sampler_calls_are_what_every_registered_sampler_makes(objective, name):
    """The cost model against the samplers themselves: a counting network, 5 steps, every sampler."""
    calls = []

    def net(x, t, **kwargs):
        calls.append(1)
        return torch.zeros_like(x)

    process = build_objective(DiffusionConfig(objective=objective, learn_sigma=False))
    sample(process, net, (1, 2, 2, 2), sampler=name, num_steps=5, generator=torch.Generator().manual_seed(0))
    assert len(calls) == sampler_calls(name, 5)
