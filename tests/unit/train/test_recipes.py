"""Recipes and objectives: flag resolution, the paper's defaults kept, timestep maps, sampler choice."""

import argparse

import pytest
import torch

from dit.cli import train as train_cli
from dit.config import DiffusionConfig, GenerationRequest, ModelConfig, TrainConfig
from dit.diffusion import create_diffusion, training_timesteps
from dit.diffusion.flow import FlowMatching
from dit.diffusion.timesteps import logit_normal
from dit.errors import UserError
from dit.sampling import ImageSampler
from dit.models import build_model
from dit.train import trainer as tr
from dit.vae import load_codec
from tests.helpers.train import STEP_DRAW_ARGS


def _args(*flags):
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    return p.parse_args(["--data-path", "d", "--results-dir", "r", *flags])


def test_paper_recipe_is_every_dataclass_default():
    cfg, model_cfg, diffusion_cfg = train_cli.build_configs(_args())
    assert diffusion_cfg == DiffusionConfig()
    assert model_cfg.learn_sigma is True
    defaults = TrainConfig()
    for field in ("lr", "warmup_steps", "grad_clip", "ema_warmup", "ema_type", "ema_decay", "betas", "recipe"):
        assert getattr(cfg, field) == getattr(defaults, field), field


def test_fast_recipe_and_explicit_flags_override_it():
    cfg, model_cfg, d = train_cli.build_configs(_args("--recipe", "fast"))
    assert (d.objective, d.timestep_sampling, d.learn_sigma, model_cfg.learn_sigma) == (
        "flow",
        "logit-normal",
        False,
        False,
    )
    assert cfg.recipe == "fast" and cfg.lr == 5e-4 and cfg.grad_clip == 1.0 and cfg.warmup_steps == 100
    assert cfg.ema_type == "halflife" and cfg.betas == (0.9, 0.99)
    assert (d.prediction_type, d.logit_normal_mean, d.logit_normal_std) == ("xstart", 0.5, 1.0)
    cfg, model_cfg, d = train_cli.build_configs(
        _args(
            "--recipe",
            "fast",
            "--lr",
            "2e-4",
            "--ema-type",
            "power",
            "--betas",
            "0.9",
            "0.95",
            "--objective",
            "gaussian",
            "--logit-normal-std",
            "0.5",
        )
    )
    assert cfg.lr == 2e-4 and cfg.ema_type == "power" and cfg.betas == (0.9, 0.95) and cfg.grad_clip == 1.0
    assert d.objective == "gaussian" and d.learn_sigma is True and model_cfg.learn_sigma is True  # σ follows objective
    assert d.logit_normal_std == 0.5
    _, model_cfg, d = train_cli.build_configs(_args("--objective", "flow"))
    assert d.learn_sigma is False and model_cfg.learn_sigma is False and d.timestep_sampling == "uniform"
    with pytest.raises(UserError, match="drop --learn-sigma"):
        train_cli.build_configs(_args("--objective", "flow", "--learn-sigma"))


def test_uniform_gaussian_timesteps_are_the_papers_formula_bit_for_bit():
    u = torch.rand(10000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u[:3] = torch.tensor([0.0, 0.9999999999999999, 0.5])
    t = training_timesteps(DiffusionConfig())(u)
    assert torch.equal(t, (u * 1000).long().clamp_(max=999))
    logit = training_timesteps(DiffusionConfig(timestep_sampling="logit-normal"))(u)
    assert torch.equal(logit, (logit_normal(u) * 1000).long().clamp_(max=999))
    flow = training_timesteps(
        DiffusionConfig(
            objective="flow",
            learn_sigma=False,
            timestep_sampling="logit-normal",
            logit_normal_mean=0.5,
            logit_normal_std=0.8,
        )
    )(u)
    assert flow.dtype == torch.float32 and torch.equal(flow, logit_normal(u, 0.5, 0.8).float())


def test_flow_timestep_draws_of_two_ranks_concatenate_to_one():
    fn = training_timesteps(DiffusionConfig(objective="flow", learn_sigma=False, timestep_sampling="logit-normal"))
    kw = {**STEP_DRAW_ARGS, "timesteps_from_coins": fn}
    full = tr.draw_step_randomness(rank=0, world=1, **kw)
    halves = [tr.draw_step_randomness(rank=r, world=2, **kw) for r in range(2)]
    assert torch.equal(full.t, torch.cat([h.t for h in halves]))
    assert full.t.dtype == torch.float32 and 0 < full.t.min() and full.t.max() < 1
    paper = tr.draw_step_randomness(rank=0, world=1, **{**kw, "timesteps_from_coins": None})
    assert torch.equal(paper.noise, full.noise) and torch.equal(paper.drop_mask, full.drop_mask)


def _tiny(learn_sigma):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            name=None,
            input_size=4,
            in_channels=3,
            num_classes=2,
            patch_size=2,
            hidden_size=16,
            depth=1,
            num_heads=2,
            learn_sigma=learn_sigma,
        )
    )
    with torch.no_grad():  # off the zero init, so outputs depend on x, t and y
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_each_objective_gets_its_own_default_sampler_and_refuses_the_others():
    codec = load_codec("none")
    flow = ImageSampler(_tiny(False), FlowMatching(), codec, GenerationRequest())
    assert (flow.request.sampler, flow.request.num_sampling_steps) == ("heun", 25)
    assert flow.settings()["objective"] == "flow"
    gauss = ImageSampler(_tiny(True), create_diffusion(""), codec, GenerationRequest())
    assert (gauss.request.sampler, gauss.request.num_sampling_steps) == ("ddpm", 250)
    assert "objective" not in gauss.settings() and "time_shift" not in gauss.settings()  # paper cards unchanged
    with pytest.raises(UserError, match="is for a Gaussian-diffusion.*flow-matching.*euler, heun, heun-x0, sde"):
        ImageSampler(_tiny(False), FlowMatching(), codec, GenerationRequest(sampler="dpm++2m"))
    with pytest.raises(UserError, match="is for a flow-matching.*Gaussian-diffusion.*ddpm"):
        ImageSampler(_tiny(True), create_diffusion(""), codec, GenerationRequest(sampler="heun"))


def test_flow_image_sampler_rows_do_not_depend_on_the_batch():
    codec = load_codec("none")
    s = ImageSampler(
        _tiny(False), FlowMatching(), codec, GenerationRequest(sampler="sde", num_sampling_steps=4, cfg_scale=2.0)
    )
    together = s.latents([0, 1, 2], [0, 1, 0])
    alone = s.latents([1], [1])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-6)
