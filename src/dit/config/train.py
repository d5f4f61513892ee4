"""The training config of `dit train` (besides the model and diffusion configs)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Literal, Optional, Tuple, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
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
# --help sections of `dit train` (the model's and the sampling hooks' flags join them)
DATA, MODEL, RUN, OPT = (
    "data",
    "model and diffusion",
    "run, budget and checkpoints",
    "recipe, optimisation and numerics",
)


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
    data_path: str = setting(
        "", help="image folder (one sub-folder per class) or latent cache", group=DATA, required=True
    )
    image_size: int = setting(256, help="image side in pixels (centre crop)", group=DATA, bound=">0")
    vae: str = setting(
        "ema", help="latent codec: ema, mse (SD VAEs), none (pixel space) or a local AutoencoderKL folder", group=DATA
    )
    num_classes: Optional[int] = setting(
        None, help="number of classes (checked against the data; default: from the data)", group=DATA, bound=">0"
    )
    unconditional: bool = setting(False, help="ignore labels: train an unconditional model", group=DATA)
    flip: bool = setting(True, help="random horizontal flips (--no-flip for digits, text)", group=DATA)
    on_bad_image: OnBadImage = setting("skip", help="unreadable images: skip and list them, or stop", group=DATA)
    num_workers: int = setting(
        default_factory=default_num_workers,
        help="data-loading worker processes per rank (default: min(4, CPUs per rank))",
        group=DATA,
    )
    # Run folder, budget, checkpoints, logs
    results_dir: str = setting("results", help="run folder (config, logs, checkpoints/)", group=RUN, required=True)
    global_batch_size: int = setting(
        256, help="examples per step over all processes (divisible by their number)", group=RUN, bound=">0"
    )
    max_steps: Optional[int] = setting(None, help="stop after this many steps", group=RUN, bound=">0")
    epochs: Optional[int] = setting(None, help="stop after this many epochs", group=RUN, bound=">0")
    max_minutes: Optional[float] = setting(
        None, help="stop cleanly (with a checkpoint) after this many minutes", group=RUN, bound=">0"
    )
    ckpt_every: int = setting(50_000, help="checkpoint every K steps (and always at the end)", group=RUN, bound=">0")
    keep_last: int = setting(5, help="keep the newest K checkpoints (0 keeps all)", group=RUN)
    log_every: int = setting(100, help="log loss, mse, vb and speed every K steps", group=RUN, bound=">0")
    tensorboard: bool = setting(
        False,
        help='also write TensorBoard events to RUN/tb (needs pip install "dit[tensorboard]"; metrics.csv is always '
        "written)",
        group=RUN,
    )
    seed: int = setting(
        0,
        help="seed of every random choice (data order, noise, t, dropout, flips)",
        aliases=("--global-seed",),
        group=RUN,
    )
    resume: Optional[str] = setting(
        None, help="'auto' (latest checkpoint in the run folder, if any) or a checkpoint path", group=RUN
    )
    sample_every: int = setting(0, help="write an EMA sample grid every K steps (0 = never)", group=RUN)
    eval_every: int = setting(0, help="evaluate the EMA model every K steps (0 = never)", group=RUN)
    # Fine-tuning: start from these pretrained weights (a checkpoint, export, official file, diffusers
    # folder or hub id); see dit.train.init_from
    init_from: Optional[str] = setting(
        None,
        help="fine-tune: start model and EMA from these weights (a checkpoint, .safetensors, official .pt, "
        "diffusers folder or hub id); another class count or image size re-makes the class table and "
        "position embeddings (listed in the log), everything else must match",
        metavar="CKPT_OR_HUB_ID",
        group=MODEL,
    )
    # The recipe these settings started from (see RECIPES); explicit settings override its values
    recipe: RecipeName = setting(
        "paper",
        help="paper: the paper's recipe, bit-exact (ε + learned Σ, uniform t, lr 1e-4, EMA 0.9999); fast: for short "
        "runs (flow matching with x-prediction, logit-normal(0.5,1) t, lr 5e-4 with 100 warm-up steps, grad clip 1, "
        "AdamW β2 0.99, half-life EMA). A config file and explicit flags override the recipe's values",
        group=OPT,
    )
    # Optimiser (AdamW, constant lr 1e-4, no weight decay; warm-up and cosine optional)
    lr: float = setting(1e-4, help="AdamW learning rate", group=OPT, bound=">0")
    weight_decay: float = setting(0.0, help="AdamW weight decay", group=OPT, bound=">=0", cli=False)
    betas: Tuple[float, float] = setting(
        (0.9, 0.999), help="AdamW β1 β2 (lower β2 adapts faster in short runs)", metavar="B", group=OPT
    )
    warmup_steps: int = setting(0, help="linear lr warm-up steps", group=OPT)
    lr_schedule: LrSchedule = setting("constant", help="lr after warm-up (cosine needs --max-steps)", group=OPT)
    grad_clip: Optional[float] = setting(
        None, help="clip the global gradient norm to this value (default: none)", group=OPT, bound=">0"
    )
    ema_decay: float = setting(0.9999, help="EMA decay per step", group=OPT)
    ema_warmup: bool = setting(False, help="use decay min(d, (1+n)/(10+n)) so short runs get a useful EMA", group=OPT)
    # EMA schedule (dit.train.ema): constant decay (paper), EDM half-life or EDM2 power function
    ema_type: EmaType = setting(
        "constant",
        help="constant: --ema-decay every step; halflife: EDM half-life growing with images seen; power: EDM2 "
        "power-function EMA of relative width --ema-std (the last two suit short runs)",
        group=OPT,
    )
    ema_halflife_kimg: float = setting(
        500.0, help="halflife EMA: longest half-life in thousands of images (EDM: 500)", group=OPT, bound=">0"
    )
    ema_rampup_ratio: Optional[float] = setting(
        0.05,
        help="halflife EMA: half-life at most this fraction of the images seen so far ('none': no ramp-up)",
        group=OPT,
        bound=">0",
    )
    ema_std: float = setting(
        0.10,
        help="power EMA: relative standard deviation σ_rel of the average over the run (EDM2: 0.05-0.15)",
        group=OPT,
        bound=">0",
    )
    # Numerics and speed
    # "auto": chosen by dit.runtime.hardware.resolve_speed (fp32 eager for the paper recipe on every
    # machine; the machine's faster path for other recipes); the trainer records the choice.
    precision: TrainPrecision = setting(
        "auto",
        help="autocast precision (fp16 adds a grad scaler); auto: fp32 for --recipe paper (bit-exact), else the "
        "faster one on this machine (CPU: bf16 only with AMX/AVX512-BF16 and a faster probe)",
        group=OPT,
    )
    grad_checkpointing: bool = setting(False, help="recompute block activations in backward to save memory", group=OPT)
    compile: Optional[bool] = setting(
        None,
        help="torch.compile each block (default auto: on for non-paper recipes on CUDA, off on CPU and for "
        "--recipe paper)",
        group=OPT,
    )
    fsdp: bool = setting(False, help="shard the model with FSDP2 (fully_shard) instead of DDP", group=OPT)
    tf32: bool = setting(
        True, help="TensorFloat-32 matmuls/convolutions on CUDA (the official train.py's --tf32)", group=OPT
    )
    device: Optional[str] = setting(None, help="cuda or cpu (default: cuda when available)", group=OPT)
    # Faults: stop after this many non-finite steps in a row
    max_bad_steps: int = setting(20, help="stop after this many non-finite steps in a row", group=OPT, bound=">0")

    def validate(self, world_size: int = 1) -> None:
        """One-line ``UserError`` for any setting a user can get wrong (``dit train`` and ``train()`` alike)."""
        if self.lr_schedule == "cosine" and not self.max_steps:
            raise UserError("a cosine lr schedule needs --max-steps")
        if self.global_batch_size <= 0 or self.global_batch_size % world_size:
            raise UserError(
                f"--global-batch-size {self.global_batch_size} is not divisible by the {world_size} processes; "
                "pick a multiple of the world size"
            )
        if self.max_steps is None and self.epochs is None and self.max_minutes is None:
            raise UserError("no budget: pass --max-steps, --epochs or --max-minutes")
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
        self.validate_folders()

    def validate_folders(self) -> None:
        """The run folder must not lie inside the data: it would be read as one more class folder."""
        if not (self.data_path and self.results_dir):
            return
        data, run = Path(self.data_path).resolve(), Path(self.results_dir).resolve()
        if run == data or data in run.parents:
            raise UserError(
                f"--results-dir {self.results_dir} lies inside --data-path {self.data_path}, where the run folder "
                "would be read as one more class of images; choose a --results-dir outside the data folder"
            )

    def validate_optimiser(self) -> None:
        """One-line errors for AdamW β and EMA settings a user can get wrong (and every choice and bound)."""
        check_settings(self)
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
