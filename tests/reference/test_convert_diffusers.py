"""Converted weights against diffusers' own DiT (installed from PyPI), and our sampler against its schedulers.

(a) With diffusers' two non-official constants patched (timestep frequencies i/128 instead of
    i/127, LayerNorm eps 1e-6), ``DiTTransformer2DModel.from_pretrained`` on a folder written by
    ``dit convert`` computes our model's function within 1e-5 (fp32): the weight mapping is exact.
(b) Stock diffusers (no patch) differs; the residuals are measured and printed (docs/interop.md).
(c) One guided step of our DDIM/DDPM equals the converted scheduler's ``step`` given the same
    model output and noise, and a whole short guided ``DiTPipeline`` run equals ours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dit.config import ModelConfig
from dit.diffusion import create_diffusion
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion import sample
from dit.weights.formats import load_model
from dit.weights.diffusers_keys import make_diffusers_official
from dit.weights.export import convert_checkpoint
from tests.helpers.weights import make_tiny_vae, model_with, random_weights, tiny

diffusers = pytest.importorskip("diffusers")

# S/2 (the official 12 blocks, 10 classes) and a B-width /8 pixel-free custom model without learned Σ.
CONFIGS = {
    "S/2": ModelConfig(name="DiT-S/2", input_size=8, num_classes=10),
    "B-width/8": tiny(
        input_size=16, patch_size=8, hidden_size=768, num_heads=12, depth=2, num_classes=7, learn_sigma=False
    ),
}
TOL = 1e-5


def _inputs(cfg: ModelConfig, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g)  # (N, C, H, W)
    t = torch.tensor([0, 17, 500, 999][:n])  # (N,)
    y = torch.tensor([0, 3, cfg.num_classes - 1, cfg.num_classes][:n])  # includes the null class
    return x, t, y


def _convert(tmp_path: Path, cfg: ModelConfig, seed: int = 0, **kw):
    """Random weights saved as our weights file, converted to a diffusers folder; (our model, folder)."""
    sd = random_weights(cfg, seed=seed)
    src = tmp_path / "w.pt"
    torch.save({"version": 1, "format": "dit-weights", "ema": sd, "config": {"model": cfg.to_dict()}}, src)
    convert_checkpoint(src, tmp_path / "hf", **kw)
    net = load_model(tmp_path / "hf").model
    return net, tmp_path / "hf"


@pytest.fixture(scope="module")
def s2(tmp_path_factory):
    """DiT-S/2 (10 classes) with random weights: our loaded model and its diffusers folder (DDIM)."""
    return _convert(tmp_path_factory.mktemp("s2"), CONFIGS["S/2"])


@pytest.fixture(scope="module")
def ddpm_folder(tmp_path_factory):
    """A tiny model converted with ``--scheduler ddpm`` (learned Σ → learned_range)."""
    return _convert(tmp_path_factory.mktemp("ddpm"), tiny(), scheduler="ddpm")[1]


def _diffusers_fn(transformer):
    """diffusers' transformer as a ``model_fn(x, t, y)`` for our samplers."""
    return lambda x, t, y: transformer(x, timestep=t, class_labels=y).sample


# ------------------------------------------------------------------ (a) exact with official constants
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_patched_diffusers_matches_our_model(tmp_path, name, s2):
    from diffusers import DiTTransformer2DModel

    cfg = CONFIGS[name]
    net, folder = s2 if name == "S/2" else _convert(tmp_path, cfg)
    hf = DiTTransformer2DModel.from_pretrained(str(folder / "transformer")).eval()
    assert make_diffusers_official(hf) > 0
    x, t, y = _inputs(cfg)
    with torch.no_grad():
        ours, theirs = net(x, t, y), hf(x, timestep=t, class_labels=y).sample  # (N, C_out, H, W)
    assert ours.shape == theirs.shape
    assert ours.abs().max() > 0.1  # a real signal, not zero-init identity blocks
    torch.testing.assert_close(theirs, ours, atol=TOL, rtol=0)


# ------------------------------------------------------------------ (b) stock diffusers residual
def test_stock_diffusers_residual_is_the_two_constants(s2, capsys):
    """Stock diffusers differs only through its timestep frequencies (our config sets eps 1e-6)
    and, with the hub's default eps 1e-5, its LayerNorm; each patch removes its share."""
    from diffusers import DiTTransformer2DModel

    cfg = CONFIGS["S/2"]
    net, folder = s2
    x, t, y = _inputs(cfg)
    with torch.no_grad():
        ours = net(x, t, y)
        stock = DiTTransformer2DModel.from_pretrained(str(folder / "transformer")).eval()
        d_freq = (stock(x, timestep=t, class_labels=y).sample - ours).abs().max().item()
        hub = DiTTransformer2DModel.from_pretrained(str(folder / "transformer"), norm_eps=1e-5).eval()
        assert hub.transformer_blocks[0].norm3.eps == 1e-5  # what the hub's configs (no norm_eps) give
        d_hub = (hub(x, timestep=t, class_labels=y).sample - ours).abs().max().item()
        for m in hub.modules():  # frequencies only: what remains is the eps 1e-5 LayerNorm
            if hasattr(m, "downscale_freq_shift"):
                m.downscale_freq_shift = 0
        d_eps = (hub(x, timestep=t, class_labels=y).sample - ours).abs().max().item()

        # A short guided sample (DDIM 10 steps, cfg 1.5): our model vs stock diffusers in our sampler.
        diffusion = create_diffusion("")
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        labels = torch.tensor([1, 2])
        run = dict(sampler="ddim", num_steps=10, noise=noise, model_kwargs={"y": labels})
        a = sample(diffusion, guided_model_fn(net, 1.5, null_label=10), noise.shape, **run)
        b = sample(diffusion, guided_model_fn(_diffusers_fn(stock), 1.5, null_label=10), noise.shape, **run)
        d_sample = ((a - b).norm() / a.norm()).item()
    with capsys.disabled():
        print(
            f"\n[stock diffusers vs ours, DiT-S/2 random weights std 0.05, |out| max {ours.abs().max():.2f}] "
            f"max |diff| of outputs: freq shift only {d_freq:.2e}, + eps 1e-5 {d_hub:.2e}, eps only {d_eps:.2e}; "
            f"DDIM-10 cfg-1.5 samples: relative L2 {d_sample:.2e}"
        )
    assert d_freq > 1e-4 and d_hub > 1e-4 and d_eps > TOL  # the documented differences are real
    assert d_eps < d_hub


# ------------------------------------------------------------------ (c) sampler steps
def _guided_output(cfg, seed=0):
    """A guided model_fn of a random-weight model, an input x_t (N, C, H, W) and labels."""
    net = model_with(cfg, random_weights(cfg, seed=seed))
    fn = guided_model_fn(net, 4.0, null_label=cfg.num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, cfg.in_channels, cfg.input_size, cfg.input_size, generator=g)  # (N, C, H, W)
    return fn, x, torch.tensor([1, 5])


@pytest.mark.parametrize("index", [49, 0])
def test_one_guided_ddim_step_equals_converted_ddim_scheduler(s2, index):
    from diffusers import DDIMScheduler

    cfg = tiny()
    folder = s2[1]
    sched = DDIMScheduler.from_pretrained(str(folder / "scheduler"))
    sched.set_timesteps(50)
    fn, x, y = _guided_output(cfg)
    spaced = create_diffusion("ddim50")
    t_orig = int(spaced.timestep_map[index])
    assert int(sched.timesteps[49 - index]) == t_orig
    with torch.no_grad():
        out = fn(x, torch.full((2,), t_orig), y)  # (N, 2C, H, W)
        ours = spaced.ddim_sample(lambda *_a, **_k: out, x, torch.full((2,), index), clip_denoised=False)["sample"]
        theirs = sched.step(out[:, : cfg.in_channels], t_orig, x).prev_sample  # the pipeline passes ε only
    torch.testing.assert_close(theirs, ours, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("index", [249, 1])
def test_one_ddpm_step_with_learned_sigma_equals_ddpm_scheduler(ddpm_folder, index):
    """The paper's 250-step DDPM: diffusers' DDPMScheduler (learned_range, our config) on the same
    (ADM-spaced) timesteps gives our step, learned Σ included, from the same model output and noise."""
    from diffusers import DDPMScheduler

    cfg = tiny()
    sched = DDPMScheduler.from_pretrained(str(ddpm_folder / "scheduler"))
    assert sched.config.variance_type == "learned_range"
    spaced = create_diffusion("250")
    grid = [int(v) for v in spaced.timestep_map]
    sched.set_timesteps(timesteps=grid[::-1])  # ADM's 250 spacing is not diffusers' "leading" one
    fn, x, y = _guided_output(cfg)
    t_orig = grid[index]
    with torch.no_grad():
        out = fn(x, torch.full((2,), t_orig), y)  # (N, 2C, H, W) ε and v
        ours = spaced.p_sample(
            lambda *_a, **_k: out,
            x,
            torch.full((2,), index),
            clip_denoised=False,
            generator=torch.Generator().manual_seed(9),
        )["sample"]
        theirs = sched.step(out, t_orig, x, generator=torch.Generator().manual_seed(9)).prev_sample
    torch.testing.assert_close(theirs, ours, atol=TOL, rtol=TOL)


def test_every_scheduler_step_matches(s2, ddpm_folder):
    """All 50 DDIM and all 250 DDPM steps, one fixed guided output: the worst gap stays within
    1e-5 (abs + rel; diffusers keeps its schedule in fp32, ADM in fp64, so low-t DDPM steps show
    ~3e-5 absolute on |x| ≈ 3)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    fn, x, y = _guided_output(tiny())
    with torch.no_grad():
        out = fn(x, torch.full((2,), 500), y)  # (N, 2C, H, W)
    ddim, ddpm = create_diffusion("ddim50"), create_diffusion("250")
    s_ddim = DDIMScheduler.from_pretrained(str(s2[1] / "scheduler"))
    s_ddim.set_timesteps(50)
    s_ddpm = DDPMScheduler.from_pretrained(str(ddpm_folder / "scheduler"))
    grid = [int(v) for v in ddpm.timestep_map]
    s_ddpm.set_timesteps(timesteps=grid[::-1])
    model = lambda *_a, **_k: out  # noqa: E731
    for i, t in enumerate(int(v) for v in ddim.timestep_map):
        ours = ddim.ddim_sample(model, x, torch.full((2,), i), clip_denoised=False)["sample"]
        torch.testing.assert_close(s_ddim.step(out[:, :4], t, x).prev_sample, ours, atol=TOL, rtol=TOL)
    for i, t in enumerate(grid):
        ours = ddpm.p_sample(
            model, x, torch.full((2,), i), clip_denoised=False, generator=torch.Generator().manual_seed(i)
        )["sample"]
        theirs = s_ddpm.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        torch.testing.assert_close(theirs, ours, atol=TOL, rtol=TOL)


@pytest.mark.slow
def test_dit_pipeline_guided_run_equals_ours(tmp_path):
    """A whole DiTPipeline folder written by `dit convert --vae` (1000 classes: the pipeline's null
    class is hard-coded to 1000): 5 guided DDIM steps + decode equal our sampler + our codec."""
    from diffusers import DiTPipeline

    from dit.vae import load_codec

    cfg = tiny(num_classes=1000)
    vae_dir = make_tiny_vae(tmp_path / "vae")
    net, folder = _convert(tmp_path, cfg, vae=str(vae_dir))
    pipe = DiTPipeline.from_pretrained(str(folder))
    assert pipe.labels["999"] == 999  # id2label "0".."999"
    assert load_model(folder).vae["source"] == str((folder / "vae").resolve())  # `dit sample` decodes with it
    make_diffusers_official(pipe.transformer)
    labels = [3, 999]
    with torch.no_grad():
        theirs = pipe(
            class_labels=labels,
            guidance_scale=4.0,
            num_inference_steps=5,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).images  # (N, 3, 64, 64) in [0, 1]
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # the pipeline's draw
        x0 = sample(
            create_diffusion(""),
            guided_model_fn(net, 4.0, null_label=1000),
            noise.shape,
            sampler="ddim",
            num_steps=5,
            noise=noise,
            model_kwargs={"y": torch.tensor(labels)},
        )
        ours = load_codec(str(vae_dir)).decode(x0) / 2 + 0.5  # (N, 3, 64, 64)
    assert theirs.std() > 0
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_pipeline_with_ddpm_scheduler_runs(tmp_path):
    """With --scheduler ddpm the pipeline folder uses a fixed variance (DiTPipeline drops Σ)."""
    from diffusers import DiTPipeline

    cfg = tiny(num_classes=1000)
    _, folder = _convert(tmp_path, cfg, vae=str(make_tiny_vae(tmp_path / "vae")), scheduler="ddpm")
    pipe = DiTPipeline.from_pretrained(str(folder))
    assert pipe.scheduler.config.variance_type == "fixed_small"
    images = pipe(
        class_labels=[1], num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0)
    ).images
    assert torch.isfinite(images).all()
