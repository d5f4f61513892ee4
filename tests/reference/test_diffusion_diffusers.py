"""Same ε-model outputs and the same noise ⇒ the same trajectories as diffusers' schedulers.

diffusers keeps its schedule tables in float32, so trajectories agree to float32 accuracy
(tolerances below are ~100× float32 epsilon on values of order 1).
"""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from dit.diffusion import create_diffusion, space_timesteps
from dit.diffusion import sample
from dit.diffusion.samplers import solver_timesteps

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SHAPE = (2, 4, 4, 4)
ATOL = 2e-4


def toy_model(x, t, y=None):
    """A fixed nonlinear 'network': ε and a variance interpolation in [-1, 1] from x and t."""
    tt = t.float().view(-1, 1, 1, 1) / 1000.0
    eps = torch.tanh(x) * 0.7 + 0.3 * torch.sin(3 * tt + x.roll(1, dims=1))  # (N, C, H, W)
    v = torch.tanh(x - tt)  # (N, C, H, W)
    return torch.cat([eps, v], dim=1)  # (N, 2C, H, W)


def _noise(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def diffusers_ddpm(timesteps, x, seed):
    sched = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        variance_type="learned_range",
        clip_sample=False,
        prediction_type="epsilon",
    )
    sched.set_timesteps(timesteps=sorted(timesteps, reverse=True))
    g = torch.Generator().manual_seed(seed)
    traj = []
    for t in sched.timesteps:
        out = toy_model(x, t.repeat(x.shape[0]))
        x = sched.step(out, t, x, generator=g).prev_sample
        traj.append(x)
    return traj


@pytest.mark.parametrize("respacing", ["", "250", "10,10,5"])
def test_ddpm_learned_range_matches_diffusers(respacing):
    kept = sorted(space_timesteps(1000, respacing))
    x_T = _noise()
    ours = []
    d = create_diffusion(respacing)
    for out in d.p_sample_loop_progressive(
        toy_model, SHAPE, noise=x_T, clip_denoised=False, generator=torch.Generator().manual_seed(1)
    ):
        ours.append(out["sample"])
    ref = diffusers_ddpm(kept, x_T, seed=1)
    assert len(ours) == len(ref) == len(kept)
    for i in (0, len(ref) // 2, len(ref) - 1):
        torch.testing.assert_close(ours[i], ref[i], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("steps,eta", [(50, 0.0), (25, 1.0), (1000, 0.0)])
def test_ddim_matches_diffusers(steps, eta):
    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    sched.set_timesteps(steps)
    respacing = f"ddim{steps}"
    assert sorted(sched.timesteps.tolist()) == sorted(space_timesteps(1000, respacing))
    x_T = _noise(2)
    x, g = x_T.clone(), torch.Generator().manual_seed(3)
    for t in sched.timesteps:
        eps = toy_model(x, t.repeat(SHAPE[0]))[:, :4]
        x = sched.step(eps, t, x, eta=eta, generator=g).prev_sample
    ours = create_diffusion(respacing).ddim_sample_loop(
        toy_model, SHAPE, noise=x_T, clip_denoised=False, eta=eta, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize(
    "sampler,spacing,steps",
    [
        ("dpm++2m", "logsnr", 20),
        ("dpm++2m-time", "time", 20),
        ("dpm++2m-karras", "karras", 10),
        ("dpm++2m", "logsnr", 2),
    ],
)
def test_dpm_solver_pp_2m_matches_diffusers(sampler, spacing, steps):
    ac = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    ts = solver_timesteps(ac, steps, spacing)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == steps
    sched = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    sched.set_timesteps(timesteps=ts.tolist())
    x_T = _noise(4)
    x = x_T.clone()
    for t in sched.timesteps:
        eps = toy_model(x, t.repeat(SHAPE[0]))[:, :4]
        x = sched.step(eps, t, x).prev_sample
    ours = sample(create_diffusion(""), toy_model, SHAPE, sampler=sampler, num_steps=steps, noise=x_T)
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=1e-4)


def test_training_tables_match_diffusers():
    """ᾱ_t of the linear schedule and q_sample agree with DDPMScheduler.add_noise."""
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    d = create_diffusion("")
    torch.testing.assert_close(d.alphas_cumprod.float(), sched.alphas_cumprod, atol=1e-6, rtol=1e-5)
    x0, noise = _noise(5), _noise(6)
    t = torch.tensor([0, 999])
    torch.testing.assert_close(d.q_sample(x0, t, noise), sched.add_noise(x0, noise, t), atol=1e-5, rtol=1e-5)
