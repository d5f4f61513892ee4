"""Loading what to sample from: a model, its training diffusion config and the decoder.

Any file `dit sample --ckpt` reads (:func:`dit.weights.formats.load_model`) or a hub id; the codec
is the one asked for, else the one the checkpoint records, else the official sample.py's ``mse``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch

from dit.config import DiffusionConfig, ModelConfig, SampleConfig
from dit.errors import UserError
from dit.models.dit import DiT
from dit.runtime.hub import resolve_pretrained
from dit.sampling.defaults import SamplingDefaults
from dit.vae import HUB_IDS, PIXEL_ID, load_codec
from dit.weights.ema_schedule import initial_weight_of
from dit.weights.formats import LoadedModel, load_model

# Warn when a checkpoint's EMA gives its initial (random) weights more than this share
STALE_EMA_WEIGHT = 0.5
OFFICIAL_VAE = "mse"  # what the official sample.py decodes with when nothing says otherwise


@dataclass
class Loaded:
    """A model ready to sample, its training diffusion config and the decoder to use."""

    model: DiT
    model_config: ModelConfig
    diffusion_config: DiffusionConfig
    codec: Any
    checkpoint: LoadedModel  # what the weights file says (path read, format, weights set, step, …)
    defaults: SamplingDefaults  # the sampler, steps and guidance the checkpoint records (or its objective's)


def _vae_spec_from_record(record: Optional[dict]) -> Optional[str]:
    """A ``--vae`` spec from a checkpoint's recorded codec header (``id``/``source``), if any."""
    if not record:
        return None

    vid = record.get("id")
    if vid == PIXEL_ID:
        return PIXEL_ID
    for short, hub in HUB_IDS.items():
        if vid == hub:
            return short
    return record.get("source")


def load_for_sampling(cfg: SampleConfig, device: torch.device | str = "cpu", revision: Optional[str] = None) -> Loaded:
    """Model (via :func:`dit.weights.formats.load_model`), diffusion config and codec for ``cfg``.

    ``cfg.ckpt`` is a local path or a Hugging Face hub id (:func:`dit.runtime.hub.resolve_pretrained`,
    at ``revision``); ``Loaded.checkpoint.path`` is the local file or folder actually read.

    The codec is ``cfg.vae`` when given, else the one recorded in the checkpoint, else (official
    files record none) ``"mse"``, the official sample.py default. The model's input size must be
    the image size divided by the codec's downsampling factor. A size that is not official
    needs a file that carries its config (``dit train`` checkpoints, their safetensors export,
    ``dit convert`` output): official-format files name their size with ``--model`` only.
    """

    if not cfg.ckpt:
        raise UserError("no checkpoint: set ckpt (a dit checkpoint, a .safetensors export, an official .pt, a hub id)")
    cfg.validate()  # before the (possibly large) checkpoint is read
    path = resolve_pretrained(cfg.ckpt, revision)
    loaded = load_model(
        path,
        model=cfg.model,
        image_size=cfg.image_size,
        num_classes=cfg.num_classes,
        weights=cfg.weights,
        device="cpu",
    )
    model = loaded.model
    spec = cfg.vae or _vae_spec_from_record(loaded.vae) or OFFICIAL_VAE
    codec = load_codec(spec, device=device)
    diffusion_cfg = DiffusionConfig.from_dict(loaded.diffusion) if loaded.diffusion else DiffusionConfig()
    if diffusion_cfg.learn_sigma != bool(model.learn_sigma):
        diffusion_cfg = dataclasses.replace(diffusion_cfg, learn_sigma=bool(model.learn_sigma))
    if int(model.in_channels) != int(codec.latent_channels):
        raise UserError(
            f"the model takes {model.in_channels} channels but the VAE '{spec}' gives {codec.latent_channels}; "
            "set vae to the one the model was trained with (none for pixel space)"
        )
    if cfg.image_size is not None:
        want = tuple(s // codec.downsample for s in (cfg.image_size, cfg.image_size))
        if tuple(model.input_size) != want:
            raise UserError(
                f"image size {cfg.image_size} with this VAE (downsampling {codec.downsample}) needs a model input of "
                f"{want[0]}x{want[1]}, but the model takes {model.input_size[0]}x{model.input_size[1]}"
            )
    defaults = SamplingDefaults.from_record(loaded.meta.get("sampling"), diffusion_cfg)
    return Loaded(model.to(device), model.config, diffusion_cfg, codec, loaded, defaults)


def stale_ema_warning(info: LoadedModel, path: str) -> Optional[str]:
    """One line when the loaded EMA weights still are mostly the initial ones, else None.

    A constant 0.9999 EMA (the paper) keeps 0.9999^n of the initial weights after n updates:
    95% after 500 steps, still 37% after 10k. Sampling it gives noise however well the model
    trained; the raw weights (``--weights model``) or a short-run EMA (``--ema-type``) do not.
    """
    if info.weights != "ema":
        return None
    weight = initial_weight_of(info.meta or {})
    if weight is None or weight <= STALE_EMA_WEIGHT:
        return None
    return (
        f"warning: the EMA weights of {path} are still {weight:.0%} their initial random values (step "
        f"{info.step}); sample the trained weights with --weights model, or train with --ema-type halflife|power"
    )
