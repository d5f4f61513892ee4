"""Configuration dataclasses shared across the package.

Each config is a plain dataclass that round-trips through ``to_dict``/``from_dict`` so it can
be stored inside checkpoints and protocol cards (self-describing files).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Optional, Tuple, Union, get_args

from dit.errors import UserError

# EMA schedules of dit.train.ema.EMASchedule: constant decay (paper), EDM half-life, EDM2 power function
EmaType = Literal["constant", "halflife", "power"]
EMA_TYPES: tuple[str, ...] = get_args(EmaType)
# Training recipes (RECIPES below holds each one's values); the first is the paper's
RecipeName = Literal["paper", "fast"]
RECIPE_NAMES: tuple[str, ...] = get_args(RecipeName)
# Block designs of the paper's Fig. 5 (dit.models.blocks), the first is DiT's
BlockDesign = Literal["adaln-zero", "adaln", "cross-attn", "in-context"]
BLOCK_DESIGNS: tuple[str, ...] = get_args(BlockDesign)
# Block options of ModelConfig (dit.models.blocks); the first of each is the paper's
NormType = Literal["layer", "rms"]
NORM_TYPES: tuple[str, ...] = get_args(NormType)
QkNormType = Literal["none", "layer", "rms"]
QK_NORM_TYPES: tuple[str, ...] = get_args(QkNormType)
MlpType = Literal["gelu", "swiglu"]
MLP_TYPES: tuple[str, ...] = get_args(MlpType)


# Classifier-free guidance on every ε channel ("all", the standard form) or on the first 3 only
# ("official": the official DiT code, needed to match its published FID). One name everywhere.
GuidanceChannels = Literal["all", "official"]
GUIDANCE_CHANNELS: tuple[str, ...] = get_args(GuidanceChannels)
OFFICIAL_GUIDED_CHANNELS = 3


def guided_channel_count(channels: str, eps_channels: int) -> int:
    """How many leading ε channels guidance ``channels`` ("all" | "official") applies to."""
    if channels not in GUIDANCE_CHANNELS:
        raise UserError(f"unknown guidance channels {channels!r}; choose one of {list(GUIDANCE_CHANNELS)}")
    return eps_channels if channels == "all" else min(OFFICIAL_GUIDED_CHANNELS, eps_channels)


# Choices each defined once; CLIs read them from here (``typing.get_args``).
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# Training also takes "auto": resolved per machine and recipe by dit.runtime.hardware.resolve_speed
TrainPrecision = Literal["auto", "fp32", "bf16", "fp16"]
TRAIN_PRECISIONS: tuple[str, ...] = get_args(TrainPrecision)
LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
OnBadImage = Literal["skip", "fail"]
ON_BAD_IMAGE: tuple[str, ...] = get_args(OnBadImage)
WeightsChoice = Literal["ema", "model"]


class _DictMixin:
    """``to_dict``/``from_dict`` for the config dataclasses below (every subclass is a dataclass)."""

    def to_dict(self) -> dict:
        if not dataclasses.is_dataclass(self) or isinstance(self, type):
            raise TypeError(f"{type(self).__name__} is not a dataclass instance")
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a dataclass")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}")
        return cls(**d)


MAX_DEFAULT_WORKERS = 4
# The --sampler choices of `dit sample` and `dit demo`: the names of dit.diffusion.samplers.SAMPLERS
# (gaussian checkpoints) and dit.diffusion.flow_samplers.SAMPLERS (flow checkpoints), kept here so
# the CLI lists them without importing torch (tests/unit/cli/test_help.py keeps them equal).
SAMPLER_NAMES = ("ddpm", "ddim", "dpm++2m", "dpm++2m-time", "dpm++2m-karras", "euler", "heun", "sde")


def default_num_workers() -> int:
    """Data-loading workers per process by default: min(4, the CPUs this process may use / local ranks).

    More workers than cores only adds context switches (and torch warns about it): a 2-core machine
    gets 2, eight ranks on 16 cores get 2 each.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(MAX_DEFAULT_WORKERS, cpus // local_ranks))


class ModelSizes(NamedTuple):
    """The size fields of a resolved :class:`ModelConfig` (every one set)."""

    patch_size: int
    hidden_size: int
    depth: int
    num_heads: int


@dataclass
class ModelConfig(_DictMixin):
    """Everything needed to rebuild a DiT (the keyword names of ``dit.models.DiT``).

    ``name`` is an official size such as ``"DiT-XL/2"`` (or ``None`` for a custom size, where
    hidden_size/depth/num_heads/patch_size are then required). ``input_size`` is the latent (or
    pixel) side, an int or an ``(H, W)`` pair.
    """

    name: Optional[str] = "DiT-XL/2"
    input_size: Union[int, Tuple[int, int]] = 32
    in_channels: int = 4
    num_classes: int = 1000
    learn_sigma: bool = True
    class_dropout_prob: float = 0.1
    block: BlockDesign = "adaln-zero"
    # Only for custom sizes (name=None); official names fill these from the registry.
    patch_size: Optional[int] = None
    hidden_size: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: float = 4.0
    # Block options for small-scale training (dit.models.blocks); the defaults are the paper's
    # DiT, whose keys, shapes and outputs they leave unchanged.
    norm: NormType = "layer"  # layer | rms: the block and final norms
    qk_norm: QkNormType = "none"  # none | layer | rms: per-head norm of queries and keys
    mlp: MlpType = "gelu"  # gelu | swiglu (hidden width 2/3: about the same parameters)
    rope: bool = False  # 2-D axial rotary position embedding on q/k (besides the fixed sin-cos table)
    long_skip: bool = False  # U-ViT long skips: block i's output joins block depth-1-i (concat + linear)

    def sizes(self) -> ModelSizes:
        """The size fields, which a resolved config (``dit.models.registry.resolve``) always has."""
        p, h, d, n = self.patch_size, self.hidden_size, self.depth, self.num_heads
        if p is None or h is None or d is None or n is None:
            raise UserError(f"model {self.name!r} has no size fields set; resolve it first (dit.models.resolve)")
        return ModelSizes(p, h, d, n)

    def options(self) -> dict[str, Any]:
        """The block options set away from the paper's DiT (empty for an official model)."""
        paper = ModelConfig()
        return {k: getattr(self, k) for k in BLOCK_OPTIONS if getattr(self, k) != getattr(paper, k)}

    def validate(self) -> "ModelConfig":
        """One-line errors for settings no DiT can be built with (``DiT.__init__`` calls it); returns self."""
        for key, choices in (("norm", NORM_TYPES), ("qk_norm", QK_NORM_TYPES), ("mlp", MLP_TYPES)):
            if getattr(self, key) not in choices:
                flag = f"--{key.replace('_', '-')}"
                raise UserError(f"{flag} {getattr(self, key)!r} is unknown; use one of {', '.join(choices)}")
        if not 0.0 <= self.class_dropout_prob <= 1.0:  # NaN fails too
            raise UserError(f"--class-dropout-prob must be in [0, 1] (the paper: 0.1), got {self.class_dropout_prob}")
        return self

    validate_options = validate  # the earlier name (block options only)


BLOCK_OPTIONS = ("norm", "qk_norm", "mlp", "rope", "long_skip")  # ModelConfig fields beyond the paper's DiT


Objective = Literal["gaussian", "flow"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
TimestepSampling = Literal["uniform", "logit-normal"]
TIMESTEP_SAMPLINGS: tuple[str, ...] = get_args(TimestepSampling)
PredictionType = Literal["epsilon", "v", "xstart"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)
FlowPrediction = Literal["v", "xstart"]
FLOW_PREDICTIONS: tuple[str, ...] = get_args(FlowPrediction)
"""What a flow model's network outputs: the velocity (SiT) or the clean image (JiT)."""


@dataclass
class DiffusionConfig(_DictMixin):
    """The training objective: the arguments of ``dit.diffusion.create_diffusion`` (ADM / DiT defaults)
    for ``objective="gaussian"``, or flow matching (SiT: linear interpolant, velocity, no learned Σ)
    for ``objective="flow"``; and how training draws timesteps (``uniform``, the paper's, or
    ``logit-normal`` with ``logit_normal_mean``/``logit_normal_std``, SD3's). Stored in every
    checkpoint, so samplers know what the model predicts (older files without these fields are
    Gaussian with uniform timesteps).
    """

    timestep_respacing: str = ""
    noise_schedule: str = "linear"
    use_kl: bool = False
    sigma_small: bool = False
    predict_xstart: bool = False
    learn_sigma: bool = True
    rescale_learned_sigmas: bool = False
    diffusion_steps: int = 1000
    # What the model predicts (gaussian: None = from predict_xstart, i.e. ε; flow: None = v, or
    # xstart, JiT's x-prediction) and, gaussian only, the min-SNR-γ loss weight (Hang et al. 2023;
    # None: unweighted, the paper's)
    prediction_type: Optional[PredictionType] = None
    min_snr_gamma: Optional[float] = None
    objective: Objective = "gaussian"
    timestep_sampling: TimestepSampling = "uniform"
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0

    def validate(self) -> "DiffusionConfig":
        """Raise a one-line UserError for settings that cannot train; returns self."""
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective {self.objective!r} is unknown; choose one of {list(OBJECTIVES)}")
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise UserError(
                f"--timestep-sampling {self.timestep_sampling!r} is unknown; choose one of {list(TIMESTEP_SAMPLINGS)}"
            )
        if not (self.logit_normal_std > 0 and abs(self.logit_normal_mean) < float("inf")):
            raise UserError("--logit-normal-std must be positive and --logit-normal-mean finite")
        if self.objective == "flow" and self.learn_sigma:
            raise UserError("flow matching predicts a velocity without a learned variance; drop --learn-sigma")
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise UserError(
                f"--prediction-type {self.prediction_type!r} is unknown; choose one of {list(PREDICTION_TYPES)}"
            )
        if self.min_snr_gamma is not None and not (0 < self.min_snr_gamma < float("inf")):
            raise UserError(f"--min-snr-gamma must be a positive number (Hang et al.: 5), got {self.min_snr_gamma}")
        if self.objective == "flow" and self.prediction_type not in (None, *FLOW_PREDICTIONS):
            raise UserError(f"a flow model predicts {' or '.join(FLOW_PREDICTIONS)}; drop --prediction-type epsilon")
        if self.objective == "flow" and self.min_snr_gamma is not None:
            raise UserError("--min-snr-gamma applies to the gaussian objective; drop it for flow")
        return self

    def diffusion_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_diffusion`` (the Gaussian objective's own fields)."""
        flow_fields = {"objective", "timestep_sampling", "logit_normal_mean", "logit_normal_std"}
        return {k: v for k, v in self.to_dict().items() if k not in flow_fields}


@dataclass
class TrainConfig(_DictMixin):
    """Everything `dit train` needs besides the model and diffusion configs (DiT's recipe by default).

    Budgets: training stops at the first of ``max_steps``, ``epochs`` and ``max_minutes`` (each
    ``None`` = unlimited, but at least one must be set) with a checkpoint. ``results_dir`` is the
    run folder itself (config, logs, ``checkpoints/``).
    """

    # Data
    data_path: str = ""
    image_size: int = 256
    vae: str = "ema"
    num_classes: Optional[int] = None
    unconditional: bool = False
    flip: bool = True
    on_bad_image: OnBadImage = "skip"
    num_workers: int = field(default_factory=default_num_workers)
    # Run folder, budget, checkpoints, logs
    results_dir: str = "results"
    global_batch_size: int = 256
    max_steps: Optional[int] = None
    epochs: Optional[int] = None
    max_minutes: Optional[float] = None
    ckpt_every: int = 50_000
    keep_last: int = 5
    log_every: int = 100
    tensorboard: bool = False  # TensorBoard events in <run>/tb as well as metrics.csv (the tensorboard extra)
    seed: int = 0
    resume: Optional[str] = None
    # Fine-tuning: start from these pretrained weights (a checkpoint, export, official file, diffusers
    # folder or hub id); see dit.train.init_from
    init_from: Optional[str] = None
    # The recipe these settings started from (see RECIPES); explicit flags override its values
    recipe: RecipeName = "paper"
    # Optimiser (AdamW, constant lr 1e-4, no weight decay; warm-up and cosine optional)
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: LrSchedule = "constant"
    grad_clip: Optional[float] = None
    ema_decay: float = 0.9999
    ema_warmup: bool = False
    # EMA schedule (dit.train.ema): constant decay (paper), EDM half-life or EDM2 power function
    ema_type: EmaType = "constant"
    ema_halflife_kimg: float = 500.0  # halflife: longest half-life, thousands of images (EDM: 500)
    ema_rampup_ratio: Optional[float] = 0.05  # halflife: half-life ≤ ratio × images seen (EDM: 0.05)
    ema_std: float = 0.10  # power: relative width σ_rel of the averaging profile (EDM2: 0.05-0.15)
    # Numerics and speed
    # "auto" / None: chosen by dit.runtime.hardware.resolve_speed (fp32 eager for the paper recipe on
    # every machine; the machine's faster path for other recipes); the trainer records the choice.
    precision: TrainPrecision = "auto"
    grad_checkpointing: bool = False
    compile: Optional[bool] = None
    fsdp: bool = False
    tf32: bool = True
    device: Optional[str] = None
    # Faults: stop after this many non-finite steps in a row
    max_bad_steps: int = 20
    # Hooks run with the EMA model every K steps (0 = off); see dit.train.callbacks.TrainCallback
    sample_every: int = 0
    eval_every: int = 0

    def validate(self, world_size: int = 1) -> None:
        """One-line ``UserError`` for any setting a user can get wrong (``dit train`` and ``train()`` alike)."""
        if self.precision not in TRAIN_PRECISIONS:
            raise UserError(f"--precision {self.precision!r} is unknown; use one of {sorted(TRAIN_PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr schedule {self.lr_schedule!r} is unknown; use constant or cosine")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise UserError(f"--on-bad-image {self.on_bad_image!r} is unknown; use skip or fail")
        if self.recipe not in RECIPE_NAMES:
            raise UserError(f"--recipe {self.recipe!r} is unknown; choose one of {', '.join(RECIPE_NAMES)}")
        if self.lr_schedule == "cosine" and not self.max_steps:
            raise UserError("a cosine lr schedule needs --max-steps")
        if self.global_batch_size <= 0 or self.global_batch_size % world_size:
            raise UserError(
                f"--global-batch-size {self.global_batch_size} is not divisible by the {world_size} processes; "
                "pick a multiple of the world size"
            )
        if self.max_steps is None and self.epochs is None and self.max_minutes is None:
            raise UserError("no budget: pass --max-steps, --epochs or --max-minutes")
        if self.ckpt_every <= 0 or self.log_every <= 0:
            raise UserError("--ckpt-every and --log-every must be positive")
        negative = [
            f"--{k.replace('_', '-')} {v}"
            for k in ("num_workers", "warmup_steps", "keep_last", "sample_every", "eval_every")
            if (v := getattr(self, k)) < 0
        ]
        if negative:
            raise UserError(f"{', '.join(negative)}: must be >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a finite positive number, got {self.lr}")
        self.validate_optimiser()

    def validate_optimiser(self) -> None:
        """One-line errors for AdamW β and EMA settings a user can get wrong."""
        b1, b2 = self.betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):  # NaN fails too
            raise UserError(f"AdamW betas must be in [0, 1) (the paper: 0.9, 0.999), got {b1}, {b2}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise UserError(f"--ema-decay must be in [0, 1] (the paper: 0.9999), got {self.ema_decay}")
        if self.ema_type not in EMA_TYPES:
            raise UserError(f"--ema-type {self.ema_type!r} is unknown; use one of {', '.join(EMA_TYPES)}")
        if not (self.ema_halflife_kimg > 0 and math.isfinite(self.ema_halflife_kimg)):
            raise UserError(f"--ema-halflife-kimg must be a positive number, got {self.ema_halflife_kimg}")
        if self.ema_rampup_ratio is not None and not self.ema_rampup_ratio > 0:
            raise UserError(f"--ema-rampup-ratio must be positive (EDM: 0.05), got {self.ema_rampup_ratio}")
        if not 0.0 < self.ema_std <= 0.28:  # σ_rel(γ) peaks near 0.3 (γ ≈ −0.3): wider has no γ
            raise UserError(f"--ema-std must be in (0, 0.28) (EDM2: 0.05-0.15), got {self.ema_std}")


RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # The paper's recipe: every dataclass default (ε + learned Σ, uniform t, lr 1e-4, EMA 0.9999).
    "paper": {},
    # For short runs (minutes to hours): flow matching with velocity prediction (SiT) and
    # logit-normal(0.5, 1) timesteps (SD3's law, shifted toward noise where the class and layout are
    # decided), the network predicting the clean image (JiT's x-prediction, loss on the velocity),
    # a higher lr with a short warm-up, gradient clipping,
    # AdamW β2 0.99 (adapts faster), and EDM's half-life EMA (half-life min(500k, 0.05 × images
    # seen)), so that a run of a few hundred steps averages its recent weights, not its initial ones.
    "fast": {
        "diffusion": {
            "objective": "flow",
            "learn_sigma": False,
            "timestep_sampling": "logit-normal",
            "logit_normal_mean": 0.5,
            "logit_normal_std": 1.0,
            "prediction_type": "xstart",
        },
        "model": {"learn_sigma": False},
        "train": {"lr": 5e-4, "warmup_steps": 100, "grad_clip": 1.0, "betas": (0.9, 0.99), "ema_type": "halflife"},
    },
}
"""Recipe name → {config section → field overrides}; each field is also a `dit train` flag of its own."""


def apply_recipe(name: RecipeName, train: "TrainConfig", model: "ModelConfig", diffusion: "DiffusionConfig"):
    """(train, model, diffusion) with recipe ``name``'s values; ``train.recipe`` records the name."""
    if name not in RECIPES:
        raise UserError(f"--recipe {name!r} is unknown; choose one of {list(RECIPE_NAMES)}")
    r = RECIPES[name]
    return (
        dataclasses.replace(train, recipe=name, **r.get("train", {})),
        dataclasses.replace(model, **r.get("model", {})),
        dataclasses.replace(diffusion, **r.get("diffusion", {})),
    )


def parse_features(spec: str, flag: str = "--features") -> tuple[Literal["inception", "classifier"], str]:
    """``"inception"`` → ("inception", ""), ``"classifier:PATH"`` → ("classifier", PATH); a one-line error
    naming ``flag`` otherwise (the syntax only; files are checked where they are opened)."""
    kind, _, arg = spec.partition(":")
    if kind == "inception" and not arg:
        return "inception", ""
    if kind == "classifier" and arg:
        return "classifier", arg
    raise UserError(f"{flag} must be 'inception' or 'classifier:PATH', got {spec!r}")


def validate_features(spec: str, flag: str) -> None:
    """One-line error unless ``spec`` is ``inception`` or ``classifier:PATH``."""
    parse_features(spec, flag)


@dataclass
class EvalConfig(_DictMixin):
    """What `dit eval` needs: the two image sets and the feature network (ADM's metrics)."""

    samples: str = ""
    reference: str = ""
    # "inception" (the FID Inception-v3, weights from ``inception`` or the cache folder) or
    # "classifier:PATH" (a network made by `dit train-classifier`)
    features: str = "inception"
    inception: Optional[str] = None
    batch_size: int = 64
    device: Optional[str] = None
    cache: bool = True
    # k of the k-NN manifolds (ADM: 3) and the Inception Score's chunk size (ADM: consecutive
    # chunks of 5,000 samples, the last one shorter; 50K samples → 10 splits)
    nearest_k: int = 3
    is_split_size: int = 5000

    def validate(self) -> "EvalConfig":
        """One-line errors for settings `dit eval` and ``evaluate()`` cannot run with; returns self."""
        if self.batch_size < 1 or self.nearest_k < 1 or self.is_split_size < 1:
            raise UserError("--batch-size, --nearest-k and --is-split-size must be positive")
        validate_features(self.features, "--features")
        return self


@dataclass
class ClassifierTrainConfig(_DictMixin):
    """What `dit train-classifier` needs: labelled images in, a small CNN out (safetensors + JSON)."""

    data_path: str = ""
    out: str = "classifier.safetensors"
    image_size: Optional[int] = None  # None: the data's own size
    width: int = 32
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    val_fraction: float = 0.1
    seed: int = 0
    device: Optional[str] = None

    def validate(self) -> "ClassifierTrainConfig":
        """One-line errors for settings `dit train-classifier` and ``train_classifier()`` cannot run with."""
        too_small = self.image_size is not None and self.image_size < 4
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1 or too_small:
            raise UserError("--epochs, --batch-size and --width must be positive and --image-size at least 4")
        if not str(self.out).endswith(".safetensors"):
            raise UserError(f"--out must end with .safetensors, got {self.out}")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a finite positive number, got {self.lr}")
        return self


@dataclass
class SampleConfig(_DictMixin):
    """What `dit sample` (and in-training sampling) needs: weights, how to sample, where to write.

    ``model``/``image_size``/``num_classes`` describe official ``.pt`` files (our checkpoints and
    safetensors exports carry their config, custom sizes included). ``vae=None`` uses the VAE recorded in the
    checkpoint (official files: ``"mse"``, the official sample.py default). ``num_samples=None``
    draws one sample per entry of ``class_labels`` (or 16 when none are given).
    """

    ckpt: str = ""
    out: str = "samples.png"
    # Model (official .pt files; ignored when the checkpoint describes itself, except to check it)
    model: Optional[str] = None
    image_size: Optional[int] = None
    num_classes: Optional[int] = None
    weights: WeightsChoice = "ema"
    vae: Optional[str] = None
    # What to draw and how
    num_samples: Optional[int] = None
    class_labels: Optional[Tuple[int, ...]] = None
    # None: the objective's default (Gaussian: DDPM 250, the paper's FID; flow: Heun 25)
    sampler: Optional[str] = None
    num_sampling_steps: Optional[int] = None
    cfg_scale: float = 1.5
    guidance_channels: GuidanceChannels = "all"
    guidance_interval: Optional[Tuple[int, int]] = None
    eta: float = 0.0
    # Flow samplers only: SD3 time shift of the grid (1 = none) and the SDE's g(t)² = c·t scale c
    time_shift: float = 1.0
    sde_diffusion: float = 1.0
    seed: int = 0
    precision: Precision = "fp32"
    # TensorFloat-32 matmuls/convolutions on CUDA, as TrainConfig.tf32 (official sample_ddp.py: on)
    tf32: bool = True
    batch_size: int = 32
    device: Optional[str] = None
    progress: bool = True

    def validate(self) -> "SampleConfig":
        """One-line errors for settings no checkpoint can be sampled with (``Sampler`` and `dit sample`);
        the sampler's name is checked against the checkpoint's objective where it is known. Returns self."""
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        if self.guidance_channels not in GUIDANCE_CHANNELS:
            raise UserError(
                f"unknown guidance channels {self.guidance_channels!r}; choose one of {list(GUIDANCE_CHANNELS)}"
            )
        if self.num_sampling_steps is not None and self.num_sampling_steps < 1:
            raise UserError(f"--num-sampling-steps must be >= 1, got {self.num_sampling_steps}")
        if self.guidance_interval is not None and len(self.guidance_interval) != 2:
            raise UserError(f"--guidance-interval takes two timesteps LOW HIGH, got {list(self.guidance_interval)}")
        if not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise UserError(f"--cfg-scale must be a finite number >= 0 (1 = no guidance), got {self.cfg_scale}")
        if not 0.0 <= self.eta <= 1.0:  # beyond 1 the DDIM step takes the square root of a negative number
            raise UserError(f"--eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {self.eta}")
        if self.num_samples is not None and self.num_samples < 1:
            raise UserError(f"--num-samples must be positive, got {self.num_samples}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be positive, got {self.batch_size}")
        return self


@dataclass
class TrainSamplingConfig(_DictMixin):
    """The sampling and evaluation hooks of `dit train` (``--sample-every``/``--eval-every``).

    Grids use ``sample_steps`` steps of the objective's default sampler (None: DDPM 250 for
    Gaussian models, Heun 25 for flow models) at ``sample_cfg_scale`` (4.0, the official sample.py
    default for pictures); evaluation draws ``eval_samples`` class-balanced samples at
    ``eval_cfg_scale`` (1.0: unguided) and compares them with ``eval_ref`` (an ``.npz`` or image
    folder; default: the training images, centre-cropped) through ``eval_features``
    (``inception`` or ``classifier:PATH``).
    """

    sample_steps: Optional[int] = None
    sample_cfg_scale: float = 4.0
    eval_samples: int = 1000
    eval_ref: Optional[str] = None
    eval_features: str = "inception"
    eval_cfg_scale: float = 1.0
    eval_batch_size: int = 64
    inception: Optional[str] = None

    def validate(self) -> "TrainSamplingConfig":
        """One-line errors for hook settings (``training_callbacks`` calls it before training starts)."""
        bad_steps = self.sample_steps is not None and self.sample_steps < 1
        if bad_steps or self.eval_samples < 1 or self.eval_batch_size < 1:
            raise UserError("--num-sampling-steps, --eval-samples and --eval-batch-size must be positive")
        validate_features(self.eval_features, "--eval-features")
        return self


DEMO_NUM_CLASSES = 10  # the bundled digits of `dit demo` (dit.data.digits)


@dataclass
class DemoConfig(_DictMixin):
    """`dit demo`: the whole pipeline on the bundled digits, as presets of the other commands' flags.

    Every field is one flag of `dit demo`; ``dit.demo.pipeline.stage_commands`` turns them into the
    `dit train-classifier`, `dit train`, `dit sample` and `dit eval` command lines it runs.
    Defaults were tuned so that the run finishes in about 5 minutes on 2 CPU cores
    (``benchmarks/demo.py`` measures it).
    """

    out: str = "dit-demo"
    resume: bool = False
    seed: int = 0
    device: Optional[str] = None
    # Data (the bundled 8×8 digits, dit.data.digits, upsampled by bicubic; 8 keeps the original pixels)
    image_size: int = 16
    held_out_fraction: float = 0.3
    # Model: a small custom pixel-space DiT (adaLN-Zero); 16 tokens of 4×4 pixels
    depth: int = 4
    hidden_size: int = 128
    num_heads: int = 4
    patch_size: int = 4
    # Training (`dit train --recipe`): "fast" (flow matching, logit-normal t, half-life EMA) learns
    # 16 px digits in minutes; "paper" (ε + learned Σ) needed 8 px and 6000 steps for the same.
    # Many small steps learn the class-conditional shape far sooner than few large ones.
    recipe: RecipeName = "fast"
    batch_size: int = 32
    max_steps: int = 2000
    max_minutes: Optional[float] = 4.0
    lr: float = 2e-3
    warmup_steps: int = 50
    ema_decay: float = 0.999  # --recipe paper only (fast uses its half-life EMA)
    precision: Precision = "fp32"
    log_every: int = 20
    # Classifier (`dit train-classifier`, on the held-out split)
    classifier_epochs: int = 30
    classifier_width: int = 32
    # Sampling (`dit sample`) and evaluation (`dit eval`); sampler None: heun for fast, dpm++2m for paper
    sampler: Optional[str] = None
    sampling_steps: int = 10
    cfg_scale: float = 1.5
    num_samples: int = 500
    grid_per_class: int = 10
    strip_class: int = 3
    strip_frames: int = 11

    def validate(self) -> "DemoConfig":
        """Settings the stages would only reject late (after minutes of training) are refused up front."""
        if self.image_size % self.patch_size:
            raise UserError(f"--image-size {self.image_size} is not a multiple of --patch-size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise UserError(f"--hidden-size {self.hidden_size} is not divisible by --num-heads {self.num_heads}")
        if self.recipe not in RECIPE_NAMES:
            raise UserError(f"--recipe must be one of {', '.join(RECIPE_NAMES)}, got {self.recipe!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        if not 0 < self.held_out_fraction < 1:
            raise UserError(f"--held-out-fraction must be between 0 and 1, got {self.held_out_fraction}")
        if not 0 <= self.strip_class < DEMO_NUM_CLASSES:
            raise UserError(f"--strip-class must be a digit 0..9, got {self.strip_class}")
        if self.num_samples < DEMO_NUM_CLASSES * self.grid_per_class:
            raise UserError(
                f"--num-samples {self.num_samples} is fewer than the grid's {DEMO_NUM_CLASSES} x --grid-per-class "
                f"{self.grid_per_class}; raise it or lower --grid-per-class"
            )
        if self.num_samples <= 3:
            raise UserError("--num-samples must be more than 3 (precision/recall use 3 nearest neighbours)")
        if self.strip_frames < 2:
            raise UserError(f"--strip-frames must be at least 2 (noise and digit), got {self.strip_frames}")
        return self
