"""The sampling config of `dit sample` and the choices sampling shares (precision, guidance, samplers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
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
SAMPLER_NAMES = (
    "ddpm",
    "ddim",
    "dpm++2m",
    "dpm++2m-time",
    "dpm++2m-karras",
    "euler",
    "heun",
    "heun-x0",
    "sde",
    "meanflow",
)

# --help sections of `dit sample`
WEIGHTS, DRAW, OUTPUT = "weights", "what to draw", "output and speed"


@dataclass
class SampleConfig(DictMixin):
    """What `dit sample` needs besides the :class:`dit.config.GenerationRequest`: which weights, where to
    write, and the machine's settings.

    ``model``/``image_size``/``num_classes`` describe official ``.pt`` files (our checkpoints and
    safetensors exports carry their config, custom sizes included). ``vae=None`` uses the VAE recorded in the
    checkpoint (official files: ``"mse"``, the official sample.py default).
    """

    ckpt: str = setting(
        "",
        help="a dit checkpoint (.pt), its .safetensors export, an official DiT .pt, a diffusers folder or a Hugging "
        "Face hub id (org/name, read through its cache; HF_HUB_OFFLINE=1: cache only)",
        group=WEIGHTS,
        required=True,
    )
    out: str = setting(
        "samples.png",
        help="FILE.png (grid), FILE.npz (arr_0 images, arr_1 labels) or DIR/ (one PNG per sample; new or empty)",
        group=OUTPUT,
        required=True,
    )
    # Model (official .pt files; ignored when the checkpoint describes itself, except to check it)
    model: Optional[str] = setting(
        None, help="official files only: the size, e.g. DiT-XL/2 (our checkpoints carry it)", group=WEIGHTS
    )
    image_size: Optional[int] = setting(
        None, help="official files only: image side in pixels (256, 512)", group=WEIGHTS, bound=">0"
    )
    num_classes: Optional[int] = setting(
        None, help="official files only: number of classes (default 1000)", group=WEIGHTS, bound=">0"
    )
    weights: WeightsChoice = setting("ema", help="which weights of a training checkpoint", group=WEIGHTS)
    vae: Optional[str] = setting(
        None,
        help="decoder: ema, mse, none (pixel space) or an AutoencoderKL folder (default: the one recorded in the "
        "checkpoint; mse for official files, as the official sample.py)",
        group=WEIGHTS,
    )
    # TensorFloat-32 matmuls/convolutions on CUDA, as TrainConfig.tf32 (official sample_ddp.py: on)
    tf32: bool = setting(
        True,
        help="TensorFloat-32 matmuls/convolutions on CUDA (on by default, as in training and the official "
        "sample_ddp.py)",
        group=OUTPUT,
    )
    device: Optional[str] = setting(None, help="cuda or cpu (default: cuda when available)", group=OUTPUT)
    progress: bool = setting(True, help="a progress bar", group=OUTPUT)
    overwrite: bool = setting(
        False,
        help="replace an existing --out (the new file or folder is written beside it, then renamed over it; "
        "the old samples are lost). Without it an existing output stops the command",
        group=OUTPUT,
    )
    revision: Optional[str] = setting(
        None, help="hub ids only: the branch, tag or commit of --ckpt to read (default: the main branch)", group=WEIGHTS
    )

    def validate(self) -> "SampleConfig":
        """One-line errors for settings no checkpoint can be read with; returns self."""
        check_settings(self)
        return self
