"""The latent boundary: images in [-1, 1] <-> (scaled) latents the DiT sees.

One object, :class:`LatentCodec`, hides whether training runs in pixel space (``"none"``) or in
the latent space of a diffusers ``AutoencoderKL`` (the Stable Diffusion VAEs ``"ema"``/``"mse"``
or any local folder written by ``AutoencoderKL.save_pretrained``).

Why the scale factor lives here: DiT multiplies latents by the VAE's ``scaling_factor``
(0.18215 for the SD VAEs) so that they have roughly unit variance. Official scripts hard-code
that constant in three places; here it is read from the VAE's own config, recorded in every
checkpoint and cache (``to_dict``), and applied in exactly one place (:meth:`LatentCodec.sample`
and :meth:`LatentCodec.decode`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence, Tuple, Union

import torch

from dit.errors import UserError

HUB_IDS = {"ema": "stabilityai/sd-vae-ft-ema", "mse": "stabilityai/sd-vae-ft-mse"}
"""Short names accepted by ``--vae`` for the Stable Diffusion VAEs used by the paper."""

PIXEL_ID = "none"


def _pair(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


class LatentCodec:
    """Base class: pixel space (identity). Subclasses encode through a VAE.

    Attributes: ``id`` (recorded in checkpoints and caches), ``scale_factor``, ``shift_factor``
    (0 for the SD VAEs; newer VAEs such as SD3's subtract it before scaling), ``latent_channels``,
    ``downsample`` (image side / latent side), ``source`` (where it was loaded from, for humans).
    """

    stochastic = False  # whether encode_moments returns a non-zero std

    def __init__(self) -> None:
        self.id = PIXEL_ID
        self.source = PIXEL_ID
        self.scale_factor = 1.0
        self.shift_factor = 0.0
        self.latent_channels = 3
        self.downsample = 1
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def latent_shape(self, image_size: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
        """(C, h, w) of the model input for ``image_size`` images; UserError if not divisible."""
        h, w = _pair(image_size)
        if h % self.downsample or w % self.downsample or h <= 0 or w <= 0:
            raise UserError(
                f"image size {h}x{w} is not a positive multiple of the VAE's downsampling factor "
                f"{self.downsample}; pick an --image-size divisible by {self.downsample}"
            )
        return self.latent_channels, h // self.downsample, w // self.downsample

    @torch.no_grad()
    def encode_moments(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Unscaled posterior mean and std of ``images`` (N, 3, H, W) in [-1, 1]. Pixels: (x, 0)."""
        return images.float(), torch.zeros_like(images, dtype=torch.float32)

    def sample(self, mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Scaled latent ``(mean + std * noise - shift) * scale_factor`` (the DiT's x0)."""
        z = mean.float() + std.float() * noise.float()  # (N, C, h, w)
        if self.shift_factor:
            z = z - self.shift_factor
        return z * self.scale_factor

    @torch.no_grad()
    def decode(self, latents_scaled: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from scaled latents (the inverse of :meth:`sample`'s scaling)."""
        return latents_scaled.float().clamp(-1.0, 1.0)

    def to(self, device: Union[str, torch.device]) -> "LatentCodec":
        """Move the codec (its network, if any) to ``device``; returns itself."""
        self.device = torch.device(device)
        return self

    def to_dict(self) -> dict:
        """The header stored in checkpoints and latent caches."""
        return {
            "id": self.id,
            "source": self.source,
            "scale_factor": float(self.scale_factor),
            "shift_factor": float(self.shift_factor),
            "latent_channels": int(self.latent_channels),
            "downsample": int(self.downsample),
        }


class PixelCodec(LatentCodec):
    """Identity codec for ``--vae none``: the DiT works on the images themselves."""


class VAECodec(LatentCodec):
    """A diffusers ``AutoencoderKL`` behind the :class:`LatentCodec` interface."""

    stochastic = True

    def __init__(self, vae, id: str, source: str, device, dtype: torch.dtype) -> None:
        super().__init__()
        cfg = vae.config
        self.vae = vae.to(device=device).eval().requires_grad_(False)  # dtype set at load (torch_dtype)
        self.id = id
        self.source = source
        self.scale_factor = float(cfg.scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.latent_channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.device = torch.device(device)
        self.dtype = dtype

    @torch.no_grad()
    def encode_moments(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = images.to(device=self.device, dtype=self.dtype)  # (N, 3, H, W)
        post = self.vae.encode(x).latent_dist
        return post.mean.float().contiguous(), post.std.float().contiguous()  # (N, C, h, w) each

    @torch.no_grad()
    def decode(self, latents_scaled: torch.Tensor) -> torch.Tensor:
        z = latents_scaled.to(device=self.device, dtype=self.dtype) / self.scale_factor  # (N, C, h, w)
        if self.shift_factor:
            z = z + self.shift_factor
        return self.vae.decode(z).sample.float().clamp(-1.0, 1.0)  # (N, 3, H, W)

    def to(self, device: Union[str, torch.device]) -> "VAECodec":
        self.vae.to(device=device)
        self.device = torch.device(device)
        return self


def _folder_fingerprint(folder: Path) -> str:
    """A short content hash of the VAE's config and weights: the same weights give the same id
    wherever the folder lives, different weights never do."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        p = folder / name
        if p.is_file() and (name == "config.json" or name.endswith((".safetensors", ".bin"))):
            h.update(name.encode())
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _load_autoencoder(where: str, dtype: torch.dtype, **kwargs):
    from diffusers import AutoencoderKL

    # low_cpu_mem_usage=False: without `accelerate` diffusers would warn and fall back to it anyway.
    return AutoencoderKL.from_pretrained(where, torch_dtype=dtype, low_cpu_mem_usage=False, **kwargs)


def _load_hub(hub_id: str, dtype: torch.dtype):
    """From the local Hugging Face cache first; online only when HF_HUB_OFFLINE is not set."""
    errors = []
    attempts = [dict(local_files_only=True)]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
        attempts.append({})
    for kwargs in attempts:
        try:
            return _load_autoencoder(hub_id, dtype, **kwargs)
        except Exception as e:  # diffusers/huggingface_hub raise many types for offline/missing
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise UserError(
        f"could not load the VAE '{hub_id}' (offline or not in the Hugging Face cache: {errors[-1]}); "
        f"download it where you are online (huggingface-cli download {hub_id}) or pass a local folder "
        f"saved by AutoencoderKL.save_pretrained as --vae PATH"
    )


def load_codec(spec: str, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    """The codec named by ``spec``: ``"none"`` (pixels), ``"ema"``/``"mse"`` (SD VAEs from the hub)
    or a local folder written by ``AutoencoderKL.save_pretrained``."""
    spec = str(spec)
    if spec == PIXEL_ID:
        return PixelCodec()
    if spec in HUB_IDS:
        hub_id = HUB_IDS[spec]
        return VAECodec(_load_hub(hub_id, dtype), id=hub_id, source=hub_id, device=device, dtype=dtype)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"--vae '{spec}' is neither none/ema/mse nor a folder; pass one of those or a folder saved "
            f"by AutoencoderKL.save_pretrained"
        )
    if not (folder / "config.json").is_file():
        raise UserError(
            f"VAE folder {folder} has no config.json; save the VAE with AutoencoderKL.save_pretrained(folder)"
        )
    try:
        vae = _load_autoencoder(str(folder), dtype)
    except Exception as e:
        raise UserError(
            f"could not load the VAE from {folder} ({type(e).__name__}: {e}); re-save it with "
            f"AutoencoderKL.save_pretrained"
        ) from e
    fid = f"local:sha256:{_folder_fingerprint(folder)}"  # moving/renaming the folder keeps the id
    return VAECodec(vae, id=fid, source=str(folder.resolve()), device=device, dtype=dtype)
