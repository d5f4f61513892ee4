"""The config of `dit demo` (the whole pipeline on the bundled digits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
from dit.config.model import ModelConfig
from dit.config.recipes import RecipeName
from dit.config.sample import SAMPLER_NAMES, Precision
from dit.errors import UserError

DEMO_NUM_CLASSES = 10  # the bundled digits of `dit demo` (dit.data.digits)

# --help sections of `dit demo`
RUN, DATA = "run", "data (the bundled 8x8 digits, scikit-learn's copy of UCI's)"
MODEL, TRAIN = "model (dit train: a custom-size pixel-space DiT, adaLN-Zero)", "training (dit train)"
CLASSIFIER = "evaluation classifier (dit train-classifier)"
SAMPLE = "sampling and evaluation (dit sample, dit eval)"


@dataclass
class DemoConfig(DictMixin):
    """`dit demo`: the whole pipeline on the bundled digits, as presets of the other commands' flags.

    Every field is one flag of `dit demo`; ``dit.demo.pipeline.stage_commands`` turns them into the
    `dit train-classifier`, `dit train`, `dit sample` and `dit eval` command lines it runs.
    Defaults were tuned so that the run finishes in about 5 minutes on 2 CPU cores
    (``benchmarks/demo.py`` measures it).
    """

    out: str = setting("dit-demo", help="run folder (refused if it holds a run, unless --resume)", group=RUN)
    resume: bool = setting(
        False, help="continue the run in --out (training resumes from its last checkpoint)", group=RUN
    )
    seed: int = setting(0, help="seed of the split, classifier, training and samples", group=RUN)
    device: Optional[str] = setting(None, help="cuda or cpu (default: cuda when available)", group=RUN)
    # Data (the bundled 8×8 digits, dit.data.digits, upsampled by bicubic; 8 keeps the original pixels)
    image_size: int = setting(
        16, help="side the 8x8 digits are resized to (8 keeps the original pixels)", group=DATA, bound=">0"
    )
    held_out_fraction: float = setting(
        0.3,
        help="share of each class held out from the DiT: the classifier's training data and the FID reference",
        group=DATA,
    )
    # Model: a small custom pixel-space DiT (adaLN-Zero); 16 tokens of 4×4 pixels
    depth: int = setting(4, help="number of DiT blocks", group=MODEL, bound=">0")
    hidden_size: int = setting(128, help="token width D", group=MODEL, bound=">0")
    num_heads: int = setting(4, help="attention heads", group=MODEL, bound=">0")
    patch_size: int = setting(4, help="patch side p (tokens: (image-size/p)^2)", group=MODEL, bound=">0")
    # Training (`dit train --recipe`): "fast" (flow matching, logit-normal t, half-life EMA) learns
    # 16 px digits in minutes; "paper" (ε + learned Σ) needed 8 px and 6000 steps for the same.
    # Many small steps learn the class-conditional shape far sooner than few large ones.
    recipe: RecipeName = setting(
        "fast", help="dit train --recipe: fast (flow matching, half-life EMA) or paper (ε + learned sigma)", group=TRAIN
    )
    batch_size: int = setting(32, help="global batch size", group=TRAIN, bound=">0")
    max_steps: int = setting(2000, help="training steps", group=TRAIN, bound=">0")
    max_minutes: Optional[float] = setting(
        4.0, help="stop training earlier (with a checkpoint) after this many minutes", group=TRAIN, bound=">0"
    )
    lr: float = setting(2e-3, help="AdamW learning rate (after warm-up)", group=TRAIN, bound=">0")
    warmup_steps: int = setting(50, help="linear lr warm-up steps", group=TRAIN, bound=">=0")
    ema_decay: float = setting(
        0.999, help="--recipe paper only: EMA decay (with warm-up: min(d, (1+n)/(10+n)))", group=TRAIN
    )
    precision: Precision = setting(
        "fp32",
        help="autocast precision of training and sampling (fp32 measured faster on a 2-core CPU)",
        group=TRAIN,
    )
    log_every: int = setting(20, help="loss-curve points every K steps", group=TRAIN, bound=">0")
    # Classifier (`dit train-classifier`, on the held-out split)
    classifier_epochs: int = setting(30, help="classifier training epochs", group=CLASSIFIER, bound=">0")
    classifier_width: int = setting(32, help="classifier channels", group=CLASSIFIER, bound=">0")
    # Sampling (`dit sample`) and evaluation (`dit eval`); sampler None: heun-x0 for fast, dpm++2m for paper
    sampler: Optional[str] = setting(
        None,
        help="sampler (see dit sample --help; default: heun-x0 for --recipe fast, dpm++2m for --recipe paper)",
        choices=SAMPLER_NAMES,
        group=SAMPLE,
    )
    sampling_steps: int = setting(10, help="sampler steps", flag="--num-sampling-steps", group=SAMPLE, bound=">0")
    cfg_scale: float = setting(1.5, help="classifier-free guidance scale", group=SAMPLE)
    num_samples: int = setting(
        500, help="class-balanced samples for the metrics (the grid is their first rows)", group=SAMPLE, bound=">0"
    )
    grid_per_class: int = setting(10, help="grid columns (samples per class)", group=SAMPLE, bound=">0")
    strip_class: int = setting(3, help="digit shown in the denoising strip", group=SAMPLE)
    strip_frames: int = setting(11, help="frames of the denoising strip", group=SAMPLE, bound=">0")

    def validate(self) -> "DemoConfig":
        """Settings the stages would only reject late (after minutes of training) are refused up front."""
        if self.image_size % self.patch_size:
            raise UserError(f"--image-size {self.image_size} is not a multiple of --patch-size {self.patch_size}")
        ModelConfig(
            name=None,
            depth=self.depth,
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            patch_size=self.patch_size,
        ).validate()
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
        check_settings(self)
        return self
