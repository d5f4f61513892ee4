"""The config of `dit demo` (the whole pipeline on the bundled digits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dit.config.base import DictMixin
from dit.config.fields import check_settings
from dit.config.recipes import RecipeName
from dit.config.sample import Precision
from dit.errors import UserError

DEMO_NUM_CLASSES = 10  # the bundled digits of `dit demo` (dit.data.digits)


@dataclass
class DemoConfig(DictMixin):
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
        check_settings(self)
        if self.image_size % self.patch_size:
            raise UserError(f"--image-size {self.image_size} is not a multiple of --patch-size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise UserError(f"--hidden-size {self.hidden_size} is not divisible by --num-heads {self.num_heads}")
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
