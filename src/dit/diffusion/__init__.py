"""Gaussian diffusion, samplers and classifier-free guidance (DDPM / Improved DDPM / ADM, DiT).

``create_diffusion`` has the official DiT signature; ``samplers.sample`` is the functional
interface (DDPM, DDIM, DPM-Solver++); ``guidance.guided_model_fn`` wraps a conditional model
for classifier-free guidance. Knows nothing about ``dit.models``: models are callables.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from dit.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from dit.diffusion.respace import SpacedDiffusion
from dit.diffusion.schedules import get_named_beta_schedule, space_timesteps
from dit.errors import UserError

PREDICTION_TYPES = ("epsilon", "xstart", "v")


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
) -> SpacedDiffusion:
    """The diffusion of the official DiT ``create_diffusion`` (ADM semantics).

    ``timestep_respacing``: ``""``/``None`` (all steps, training), ``"250"``, ``"ddim50"``,
    ``"10,10,5"`` or a list of section counts. ``prediction_type`` (``"epsilon"``, ``"xstart"``,
    ``"v"``) overrides ``predict_xstart`` when given. ``learn_sigma`` selects the learned-range
    Σ (output 2C channels); otherwise ``sigma_small`` picks β̃_t, else β_t.
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
    )


__all__ = [
    "create_diffusion",
    "GaussianDiffusion",
    "SpacedDiffusion",
    "ModelMeanType",
    "ModelVarType",
    "LossType",
    "space_timesteps",
    "get_named_beta_schedule",
]
