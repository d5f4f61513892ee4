"""Gaussian diffusion and flow matching, their samplers and classifier-free guidance.

``build_objective(DiffusionConfig)`` gives the training object of either objective (Gaussian:
DDPM / Improved DDPM / ADM as in DiT; flow: SiT's linear interpolant, :mod:`.flow`; meanflow:
average velocities, :mod:`.meanflow`);
``create_diffusion`` has the official DiT signature; :mod:`.registry` holds every sampler of both
objectives (DDPM, DDIM, DPM-Solver++; Euler, Heun, SDE) over one denoiser interface
(:mod:`.denoiser`), and ``sample`` is its functional entry; ``guidance.guided_model_fn`` wraps a
conditional model for classifier-free guidance. Knows nothing about ``dit.models``: models are callables.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

from dit.config import PREDICTION_TYPES, DiffusionConfig
from dit.diffusion.flow import FlowMatching
from dit.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from dit.diffusion.meanflow import IntervalTimes, MeanFlow
from dit.diffusion.respace import SpacedDiffusion
from dit.diffusion.schedules import get_named_beta_schedule, space_timesteps
from dit.diffusion.timesteps import continuous_map, discrete_map
from dit.errors import UserError


def create_diffusion(
    timestep_respacing: Union[str, int, Sequence[int], None],
    noise_schedule: str = "linear",
    use_kl: bool = False,
    sigma_small: bool = False,
    predict_xstart: bool = False,
    learn_sigma: bool = True,
    rescale_learned_sigmas: bool = False,
    diffusion_steps: int = 1000,
    prediction_type: Optional[str] = None,
    min_snr_gamma: Optional[float] = None,
) -> SpacedDiffusion:
    """The diffusion of the official DiT ``create_diffusion`` (ADM semantics).

    ``timestep_respacing``: ``""``/``None`` (all steps, training), ``"250"``, ``"ddim50"``,
    ``"10,10,5"`` or a list of section counts. ``prediction_type`` (``"epsilon"``, ``"xstart"``,
    ``"v"``) overrides ``predict_xstart`` when given. ``learn_sigma`` selects the learned-range
    Σ (output 2C channels); otherwise ``sigma_small`` picks β̃_t, else β_t. ``min_snr_gamma``
    weights the MSE term by min-SNR-γ (Hang et al. 2023; None: unweighted, the paper's).
    """
    if prediction_type is None:
        prediction_type = "xstart" if predict_xstart else "epsilon"
    if prediction_type not in PREDICTION_TYPES:
        raise UserError(f"unknown prediction type {prediction_type!r}; choose one of {list(PREDICTION_TYPES)}")
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    if use_kl:
        loss_type = LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if sigma_small else ModelVarType.FIXED_LARGE
    return SpacedDiffusion(
        space_timesteps(diffusion_steps, timestep_respacing),
        betas=betas,
        model_mean_type=ModelMeanType(prediction_type),
        model_var_type=var_type,
        loss_type=loss_type,
        min_snr_gamma=min_snr_gamma,
    )


def build_objective(cfg: DiffusionConfig, timestep_respacing: Optional[str] = None):
    """The training/sampling object of ``cfg``: a :class:`SpacedDiffusion` (``objective="gaussian"``)
    or :class:`FlowMatching` (``"flow"``). ``timestep_respacing`` overrides the config's."""
    cfg.validate()
    if cfg.objective == "flow":
        return FlowMatching(prediction=cfg.prediction_type or "v")
    if cfg.objective == "meanflow":
        return MeanFlow(
            cfg.prediction_type or "v", cfg.meanflow_guidance, cfg.meanflow_adaptive_power, cfg.meanflow_adaptive_c
        )
    kwargs = cfg.diffusion_kwargs()
    if timestep_respacing is not None:
        kwargs["timestep_respacing"] = timestep_respacing
    return create_diffusion(**kwargs)


def training_timesteps(cfg: DiffusionConfig) -> Callable:
    """Map of per-example uniform coins u (n,) float64 → training timesteps (n,): integers 0..T−1 for
    the Gaussian objective (uniform: the paper's ⌊u·T⌋), floats in [0, 1] for flow matching."""
    cfg.validate()
    if cfg.objective == "flow":
        cont = continuous_map(cfg.timestep_sampling, cfg.logit_normal_mean, cfg.logit_normal_std)
        return lambda u: cont(u).float()
    if cfg.objective == "meanflow":  # three coins per example → (t, r) (n, 2)
        return IntervalTimes(
            continuous_map(cfg.timestep_sampling, cfg.logit_normal_mean, cfg.logit_normal_std), cfg.meanflow_share
        )
    return discrete_map(cfg.timestep_sampling, cfg.diffusion_steps, cfg.logit_normal_mean, cfg.logit_normal_std)


from dit.diffusion.registry import check_sampler, sample  # noqa: E402 (after the objectives it draws from)

__all__ = [
    "build_objective",
    "training_timesteps",
    "check_sampler",
    "sample",
    "FlowMatching",
    "create_diffusion",
    "GaussianDiffusion",
    "SpacedDiffusion",
    "ModelMeanType",
    "ModelVarType",
    "LossType",
    "space_timesteps",
    "get_named_beta_schedule",
]
