"""The sampler: model + training objective + codec + settings → decoded images for any global indices.

Reproducibility contract: sample ``i`` is a function of (weights, settings, seed, i) only. Its
initial noise x_T comes from the generator keyed by (seed, i, SAMPLE_INIT) and, for stochastic
samplers, its per-step noise from the one keyed by (seed, i, SAMPLE_STEP) (see
:mod:`dit.runtime.rng`), whatever batch or process draws it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from dit.config import SampleConfig
from dit.diffusion import DEFAULT_SAMPLING, build_objective, check_sampler, flow_samplers
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion.samplers import STOCHASTIC, sample
from dit.errors import UserError
from dit.models.dit import DiT
from dit.runtime import rng
from dit.sampling.load import Loaded
from dit.sampling.writers import to_uint8

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _model_fn(model: nn.Module, precision: str, device: torch.device):
    """``fn(x, t, y)`` running the model under autocast for bf16/fp16, returning float32."""
    dtype = PRECISIONS[precision]

    def fn(x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        ctx = torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            out = model(x, t, y)  # (B, C or 2C, h, w)
        return out.float()

    return fn


# Class labels of a batch: a list or an int array (N,)
Labels = Union[Sequence[int], np.ndarray]


class ImageSampler:
    """Draws decoded uint8 images for global sample indices with one model and one set of settings.

    ``model``: a DiT (put in eval mode here: training mode would drop labels at random).
    ``diffusion``: the model's training diffusion (the sampler respaces it). ``codec``: a
    :class:`dit.vae.LatentCodec` (pixel space or a VAE). ``cfg``: the sampling fields of a
    :class:`SampleConfig` (sampler, steps, guidance, seed, precision).
    """

    def __init__(self, model: DiT, diffusion, codec, cfg: SampleConfig, device: torch.device | str = "cpu"):

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        # What the model predicts decides the samplers: ε (+Σ) for Gaussian diffusion, v for flow matching.
        self.objective = getattr(diffusion, "objective", "gaussian")
        default_sampler, default_steps = DEFAULT_SAMPLING[self.objective]
        self.sampler_name: str = default_sampler if cfg.sampler is None else cfg.sampler
        self.num_steps: int = default_steps if cfg.num_sampling_steps is None else cfg.num_sampling_steps
        cfg = dataclasses.replace(cfg, sampler=self.sampler_name, num_sampling_steps=self.num_steps)
        self.diffusion, self.codec, self.cfg = diffusion, codec, cfg
        check_sampler(self.objective, self.sampler_name)
        cfg.validate()
        self.num_classes = int(getattr(model, "num_classes", 0))
        y_emb = getattr(model, "y_embedder", None)
        has_null = y_emb is not None and bool(getattr(y_emb, "has_null_class", False))
        if self.num_classes and cfg.cfg_scale != 1.0 and not has_null:
            raise UserError(
                f"--cfg-scale {cfg.cfg_scale} needs a null class, but this model was trained without label "
                "dropout (class_dropout_prob=0); use --cfg-scale 1"
            )
        if not self.num_classes and cfg.cfg_scale != 1.0:
            raise UserError("classifier-free guidance needs a class-conditional model; use --cfg-scale 1 for this one")
        self.null_label = self.num_classes if (self.num_classes and has_null) else None
        self.latent_shape = (int(model.in_channels), *model.input_size)  # (C, h, w)
        # Pixel-space models sample in [-1, 1], so x_0 is clipped there (ADM); latents are not.
        self.clip_denoised = codec.id == "none"

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the decoded images."""
        _, h, w = self.latent_shape
        return h * self.codec.downsample, w * self.codec.downsample

    def settings(self) -> dict[str, Any]:
        """What this sampler contributes to the protocol card's settings."""

        c = self.cfg
        stochastic = c.sampler in STOCHASTIC | flow_samplers.STOCHASTIC or (c.sampler == "ddim" and c.eta > 0)
        # Flow models add their objective and flow-sampler knobs (Gaussian cards stay as they were).
        flow = {
            "objective": "flow",
            "time_shift": float(c.time_shift),
            "sde_diffusion": float(c.sde_diffusion) if c.sampler in flow_samplers.STOCHASTIC else None,
        }
        return {
            **(flow if self.objective == "flow" else {}),
            "sampler": c.sampler,
            "num_sampling_steps": self.num_steps,
            "eta": float(c.eta) if c.sampler == "ddim" else None,
            "stochastic": stochastic,
            "clip_denoised": self.clip_denoised,
            "cfg_scale": float(c.cfg_scale),
            "guidance_channels": c.guidance_channels,
            "guidance_interval": list(c.guidance_interval) if c.guidance_interval else None,
            "guided": self.null_label is not None and c.cfg_scale != 1.0,
            "precision": c.precision,
            # TF32 as in effect (set by `dit sample --no-tf32` or the trainer's tf32); None off CUDA
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if self.device.type == "cuda" else None,
            "seed": int(c.seed),
            "noise": "x_T row i ~ generator(seed, i, SAMPLE_INIT); step noise row i ~ generator(seed, i, SAMPLE_STEP)",
            "vae": self.codec.to_dict(),
            "image_size": list(self.image_shape),
            "latent_shape": list(self.latent_shape),
        }

    @torch.no_grad()
    def latents(self, indices: Sequence[int], labels: Optional[Labels], callback=None) -> torch.Tensor:
        """x_0 (B, C, h, w) float32 for global sample ``indices`` with class ``labels`` (or None).

        ``callback(step, t, x, pred_x0)`` is passed to the sampler (e.g. `dit demo`'s denoising strip).
        """

        c = self.cfg
        b = len(indices)
        noise = rng.randn_rows((b, *self.latent_shape), rng.example_generators(c.seed, indices, rng.SAMPLE_INIT))
        step_gens = rng.example_generators(c.seed, indices, rng.SAMPLE_STEP)  # (B,) one per row
        fn = guided_model_fn(
            _model_fn(self.model, c.precision, self.device),
            c.cfg_scale,
            self.null_label,
            channels=c.guidance_channels,
            interval=(c.guidance_interval[0], c.guidance_interval[1]) if c.guidance_interval else None,
        )
        kwargs = {}
        if labels is not None and self.num_classes:
            kwargs["y"] = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self.device)  # (B,)
        # The objective's sampler with its own knobs; everything else is common to both.
        if self.objective == "flow":
            draw = functools.partial(
                flow_samplers.sample,
                time_shift=c.time_shift,
                sde_diffusion=c.sde_diffusion,
                prediction=self.diffusion.prediction,
            )
        else:
            draw = functools.partial(sample, self.diffusion, eta=c.eta)
        return draw(
            fn,
            (b, *self.latent_shape),
            sampler=self.sampler_name,
            num_steps=self.num_steps,
            noise=noise.to(self.device),
            generator=step_gens,
            model_kwargs=kwargs,
            clip_denoised=self.clip_denoised,
            device=self.device,
            callback=callback,
        )  # (B, C, h, w)

    @torch.no_grad()
    def images(self, indices: Sequence[int], labels: Optional[Labels], callback=None) -> np.ndarray:
        """uint8 (B, H, W, 3): :meth:`latents` decoded by the codec (fp32) and converted to pixels.

        ``callback`` is passed on to :meth:`latents` (progress; raising inside it aborts the draw).
        """
        x = self.codec.decode(self.latents(indices, labels, callback))  # (B, 3, H, W) in [-1, 1]
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        if bad:  # NaN would turn into black images and silently spoil a grid or an FID
            raise UserError(
                f"{bad} of {len(x)} samples (indices {indices[0]}..{indices[-1]}) are not finite: the checkpoint's "
                "weights or the sampler settings are broken; check the weights with another --sampler or checkpoint"
            )
        if x.shape[1] != 3:
            raise UserError(
                f"the decoder gives {x.shape[1]} channels, not RGB; a pixel-space model must have 3 input channels"
            )
        return to_uint8(x).numpy()  # (B, H, W, 3)


def make_sampler(loaded: Loaded, cfg: SampleConfig, device: torch.device | str) -> ImageSampler:
    """The :class:`ImageSampler` of ``cfg``'s sampling settings over a loaded model (the training objective:
    a Gaussian diffusion, respaced by the sampler itself, or flow matching)."""

    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    return ImageSampler(loaded.model, diffusion, loaded.codec, cfg, device)
