"""The training objective's config (Gaussian diffusion or flow matching)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
from dit.errors import UserError

Objective = Literal["gaussian", "flow", "meanflow"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
TimestepSampling = Literal["uniform", "logit-normal"]
TIMESTEP_SAMPLINGS: tuple[str, ...] = get_args(TimestepSampling)
PredictionType = Literal["epsilon", "v", "xstart"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)
FlowPrediction = Literal["v", "xstart"]
FLOW_PREDICTIONS: tuple[str, ...] = get_args(FlowPrediction)
"""What a flow model's network outputs: the velocity (SiT) or the clean image (JiT)."""


GROUP = "model and diffusion"  # the --help section of `dit train`


@dataclass
class DiffusionConfig(DictMixin):
    """The training objective: the arguments of ``dit.diffusion.create_diffusion`` (ADM / DiT defaults)
    for ``objective="gaussian"``, or flow matching (SiT: linear interpolant, velocity, no learned Σ)
    for ``objective="flow"``; and how training draws timesteps (``uniform``, the paper's, or
    ``logit-normal`` with ``logit_normal_mean``/``logit_normal_std``, SD3's). Stored in every
    checkpoint, so samplers know what the model predicts (older files without these fields are
    Gaussian with uniform timesteps).
    """

    # ADM's create_diffusion arguments (config files only: the paper's values are the defaults)
    timestep_respacing: str = setting("", help="ADM timestep respacing of the training diffusion", cli=False)
    noise_schedule: str = setting("linear", help="ADM noise schedule (linear, cosine)", cli=False)
    use_kl: bool = setting(False, help="ADM: train on the KL term", cli=False)
    sigma_small: bool = setting(False, help="ADM: fixed small variance", cli=False)
    predict_xstart: bool = setting(False, help="ADM: predict x0", cli=False)
    learn_sigma: bool = setting(True, help="learned variance (follows ModelConfig.learn_sigma)", cli=False)
    rescale_learned_sigmas: bool = setting(False, help="ADM: rescale the learned-variance loss", cli=False)
    diffusion_steps: int = setting(1000, help="ADM: diffusion steps T", cli=False, bound=">0")
    # What the model predicts (gaussian: None = from predict_xstart, i.e. ε; flow: None = v, or
    # xstart, JiT's x-prediction) and, gaussian only, the min-SNR-γ loss weight (Hang et al. 2023;
    # None: unweighted, the paper's)
    prediction_type: Optional[PredictionType] = setting(
        None,
        help="what the model predicts: gaussian epsilon (paper), xstart or v; flow v or xstart (JiT) "
        "(default: epsilon for gaussian, v for flow)",
        group=GROUP,
    )
    min_snr_gamma: Optional[float] = setting(
        None,
        help="gaussian objective: weight the MSE by min-SNR-γ (Hang et al. 2023 use 5; default: unweighted)",
        group=GROUP,
        bound=">0",
    )
    objective: Objective = setting(
        "gaussian",
        help="gaussian: ε-prediction (+ learned Σ), the paper's; flow: flow matching with velocity prediction "
        "(SiT; sampled with heun/euler/sde); meanflow: average velocity u(z_t, r, t) (MeanFlow; 1-2 calls)",
        group=GROUP,
    )
    timestep_sampling: TimestepSampling = setting(
        "uniform", help="training timesteps: uniform (paper) or logit-normal (SD3)", group=GROUP
    )
    logit_normal_mean: float = setting(0.0, help="logit-normal timesteps: mean m of logit(t)", group=GROUP)
    logit_normal_std: float = setting(1.0, help="logit-normal timesteps: std s of logit(t)", group=GROUP, bound=">0")
    # MeanFlow (Geng et al. 2025): the network predicts the average velocity over [r, t]
    meanflow_share: float = setting(
        0.25,
        help="meanflow: the share of training examples with r < t (the rest have r = t, plain flow matching; "
        "the paper: 0.25)",
        group=GROUP,
    )
    meanflow_guidance: float = setting(
        1.0,
        help="meanflow: the guidance scale ω folded into the training target, so one call draws a guided "
        "sample (1: none; sample such a model with --cfg-scale 1)",
        group=GROUP,
    )
    meanflow_adaptive_power: float = setting(
        1.0, help="meanflow: p of the adaptive loss weight 1/(||Δ||² + c)^p (the paper: 1; 0: plain L2)", group=GROUP
    )
    meanflow_adaptive_c: float = setting(
        1e-3, help="meanflow: c of the adaptive loss weight 1/(||Δ||² + c)^p", group=GROUP
    )

    def validate(self) -> "DiffusionConfig":
        """Raise a one-line UserError for settings that cannot train; returns self."""
        check_settings(self)
        if not (self.logit_normal_std > 0 and abs(self.logit_normal_mean) < float("inf")):
            raise UserError("--logit-normal-std must be positive and --logit-normal-mean finite")
        if self.objective != "gaussian" and self.learn_sigma:
            raise UserError("flow matching predicts a velocity without a learned variance; drop --learn-sigma")
        if self.min_snr_gamma is not None and not (0 < self.min_snr_gamma < float("inf")):
            raise UserError(f"--min-snr-gamma must be a positive number (Hang et al.: 5), got {self.min_snr_gamma}")
        if self.objective != "gaussian" and self.prediction_type not in (None, *FLOW_PREDICTIONS):
            raise UserError(f"a flow model predicts {' or '.join(FLOW_PREDICTIONS)}; drop --prediction-type epsilon")
        if self.objective != "gaussian" and self.min_snr_gamma is not None:
            raise UserError(f"--min-snr-gamma applies to the gaussian objective; drop it for {self.objective}")
        if not 0.0 <= self.meanflow_share <= 1.0:
            raise UserError(f"--meanflow-share must be in [0, 1] (the paper: 0.25), got {self.meanflow_share}")
        if not (self.meanflow_guidance >= 1.0 and self.meanflow_guidance < float("inf")):
            raise UserError(f"--meanflow-guidance must be a finite number >= 1 (1: none), got {self.meanflow_guidance}")
        if not (0 <= self.meanflow_adaptive_power < float("inf") and 0 < self.meanflow_adaptive_c < float("inf")):
            raise UserError("--meanflow-adaptive-power must be >= 0 and --meanflow-adaptive-c positive")
        return self

    def diffusion_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_diffusion`` (the Gaussian objective's own fields)."""
        flow_fields = {"objective", "timestep_sampling", "logit_normal_mean", "logit_normal_std", *MEANFLOW_FIELDS}
        return {k: v for k, v in self.to_dict().items() if k not in flow_fields}


MEANFLOW_FIELDS = ("meanflow_share", "meanflow_guidance", "meanflow_adaptive_power", "meanflow_adaptive_c")
"""The DiffusionConfig fields that only MeanFlow reads."""
