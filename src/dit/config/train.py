"""The training config of `dit train` (besides the model and diffusion configs)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_choices
from dit.config.recipes import RecipeName
from dit.errors import UserError

# EMA schedules of dit.train.ema.EMASchedule: constant decay (paper), EDM half-life, EDM2 power function
EmaType = Literal["constant", "halflife", "power"]
EMA_TYPES: tuple[str, ...] = get_args(EmaType)
# Training also takes "auto": resolved per machine and recipe by dit.runtime.hardware.resolve_speed
TrainPrecision = Literal["auto", "fp32", "bf16", "fp16"]
TRAIN_PRECISIONS: tuple[str, ...] = get_args(TrainPrecision)
LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
OnBadImage = Literal["skip", "fail"]
ON_BAD_IMAGE: tuple[str, ...] = get_args(OnBadImage)

MAX_DEFAULT_WORKERS = 4


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


@dataclass
class TrainConfig(DictMixin):
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
        check_choices(self)
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
        if not (self.ema_halflife_kimg > 0 and math.isfinite(self.ema_halflife_kimg)):
            raise UserError(f"--ema-halflife-kimg must be a positive number, got {self.ema_halflife_kimg}")
        if self.ema_rampup_ratio is not None and not self.ema_rampup_ratio > 0:
            raise UserError(f"--ema-rampup-ratio must be positive (EDM: 0.05), got {self.ema_rampup_ratio}")
        if not 0.0 < self.ema_std <= 0.28:  # σ_rel(γ) peaks near 0.3 (γ ≈ −0.3): wider has no γ
            raise UserError(f"--ema-std must be in (0, 0.28) (EDM2: 0.05-0.15), got {self.ema_std}")
