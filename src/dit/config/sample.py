"""The sampling config of `dit sample` and the choices sampling shares (precision, guidance, samplers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Tuple, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_settings
from dit.errors import UserError

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
WeightsChoice = Literal["ema", "model"]

# The --sampler choices: the names of dit.diffusion.registry.SAMPLERS (both objectives), copied here
# so that command lines list them without importing torch (tests/unit/cli/test_help.py keeps them equal).
SAMPLER_NAMES = ("ddpm", "ddim", "dpm++2m", "dpm++2m-time", "dpm++2m-karras", "euler", "heun", "sde")


@dataclass
class SampleConfig(DictMixin):
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
        check_settings(self)
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
