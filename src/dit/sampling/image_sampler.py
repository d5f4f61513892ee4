"""The sampler: model + training objective + codec + settings → decoded images for any global indices.

Reproducibility contract: sample ``i`` is a function of (weights, settings, seed, i) only. Its
initial noise x_T comes from the generator keyed by (seed, i, SAMPLE_INIT) and, for stochastic
samplers, its per-step noise from the one keyed by (seed, i, SAMPLE_STEP) (see
:mod:`dit.runtime.rng`), whatever batch or process draws it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from dit.config import GenerationRequest
from dit.diffusion import build_objective
from dit.diffusion.denoiser import Denoiser
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion.registry import check_sampler, default_for, guidance_interval_error, options_for
from dit.errors import UserError
from dit.models.dit import DiT
from dit.runtime import rng
from dit.sampling.defaults import FALLBACK_CFG_SCALE, SamplingDefaults
from dit.sampling.load import Loaded
from dit.sampling.writers import to_uint8

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _model_fn(model: nn.Module, precision: str, device: torch.device):
    """``fn(x, t, y)`` running the model under autocast for bf16/fp16, returning float32."""
    dtype = PRECISIONS[precision]

    def fn(x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None, **kw: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            out = model(x, t, y, **kw)  # (B, C or 2C, h, w); kw: MeanFlow's interval
        return out.float()

    return fn


# Class labels of a batch: a list or an int array (N,)
Labels = Union[Sequence[int], np.ndarray]


class ImageSampler:
    """Draws decoded uint8 images for global sample indices with one model and one set of settings.

    ``model``: a DiT (put in eval mode here: training mode would drop labels at random).
    ``diffusion``: the model's training diffusion (the sampler respaces it). ``codec``: a
    :class:`dit.vae.LatentCodec` (pixel space or a VAE). ``request``: a :class:`GenerationRequest`
    (its sampler, steps, options, guidance, seed and precision); its unset sampler, steps and guidance
    come from ``defaults`` (the checkpoint's :class:`SamplingDefaults`; None: the objective's).
    """

    def __init__(
        self,
        model: DiT,
        diffusion,
        codec,
        request: GenerationRequest,
        device: torch.device | str = "cpu",
        defaults: Optional[SamplingDefaults] = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        # What the model predicts decides the samplers: ε (+Σ) for Gaussian diffusion, v for flow matching.
        self.objective = getattr(diffusion, "objective", "gaussian")
        if defaults is None:
            defaults = SamplingDefaults(*default_for(self.objective, getattr(diffusion, "prediction", None)))
        self.num_classes = int(getattr(model, "num_classes", 0))
        y_emb = getattr(model, "y_embedder", None)
        has_null = y_emb is not None and bool(getattr(y_emb, "has_null_class", False))
        # Unset guidance on a model that cannot be guided (unconditional, or no null class) is none.
        cfg = defaults.fill(request, FALLBACK_CFG_SCALE if self.num_classes and has_null else 1.0)
        assert cfg.sampler is not None and cfg.num_sampling_steps is not None and cfg.cfg_scale is not None
        self.sampler_name: str = cfg.sampler
        self.num_steps: int = cfg.num_sampling_steps
        self.cfg_scale: float = cfg.cfg_scale
        self.diffusion, self.codec, self.request = diffusion, codec, cfg
        self.entry = check_sampler(self.objective, self.sampler_name)
        cfg.validate()
        if cfg.guidance_interval is not None and (why := guidance_interval_error(self.objective)):
            raise UserError(f"guidance_interval {why}; leave it unset")
        # The settings this sampler reads (its keyword-only options), by name from the request
        self.options: dict[str, Any] = {k: getattr(cfg, k) for k in self.entry.options}
        if self.num_classes and cfg.cfg_scale != 1.0 and not has_null:
            raise UserError(
                f"guidance scale cfg_scale={cfg.cfg_scale} needs a null class, but this model was trained without "
                "label dropout (class_dropout_prob=0); set cfg_scale to 1"
            )
        if not self.num_classes and cfg.cfg_scale != 1.0:
            raise UserError("classifier-free guidance needs a class-conditional model; set cfg_scale to 1 for this one")
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

        c = self.request
        # Every option of the objective's samplers: the value where this sampler reads it, else None.
        options = {k: self.options.get(k) for k in options_for(self.objective)}
        # Cards of Gaussian models predate the objective key; they (and their shards' resume check) keep their form.
        objective = {} if self.objective == "gaussian" else {"objective": self.objective}
        return {
            **objective,
            "sampler": c.sampler,
            "num_sampling_steps": self.num_steps,
            **options,
            "stochastic": self.entry.stochastic(self.options),
            "clip_denoised": self.clip_denoised,
            "cfg_scale": float(self.cfg_scale),
            "guidance_channels": c.guidance_channels,
            "guidance_interval": list(c.guidance_interval) if c.guidance_interval else None,
            "guided": self.null_label is not None and self.cfg_scale != 1.0,
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

        c = self.request
        b = len(indices)
        noise = rng.randn_rows((b, *self.latent_shape), rng.example_generators(c.seed, indices, rng.SAMPLE_INIT))
        step_gens = rng.example_generators(c.seed, indices, rng.SAMPLE_STEP)  # (B,) one per row
        fn = guided_model_fn(
            _model_fn(self.model, c.precision, self.device),
            self.cfg_scale,
            self.null_label,
            channels=c.guidance_channels,
            interval=(c.guidance_interval[0], c.guidance_interval[1]) if c.guidance_interval else None,
        )
        kwargs = {}
        if labels is not None and self.num_classes:
            kwargs["y"] = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self.device)  # (B,)
        denoiser = Denoiser(self.diffusion, fn, kwargs, self.clip_denoised)
        x = noise.to(self.device)  # (B, C, h, w)
        return self.entry.fn(denoiser, x, self.num_steps, generator=step_gens, callback=callback, **self.options)

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
                "weights or the sampler settings are broken; check the weights with another sampler or checkpoint"
            )
        if x.shape[1] != 3:
            raise UserError(
                f"the decoder gives {x.shape[1]} channels, not RGB; a pixel-space model must have 3 input channels"
            )
        return to_uint8(x).numpy()  # (B, H, W, 3)


def make_sampler(loaded: Loaded, request: GenerationRequest, device: torch.device | str) -> ImageSampler:
    """The :class:`ImageSampler` of ``request`` over a loaded model (the training objective: a Gaussian
    diffusion, respaced by the sampler itself, or flow matching)."""

    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    return ImageSampler(loaded.model, diffusion, loaded.codec, request, device, loaded.defaults)
