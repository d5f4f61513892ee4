"""The config of `dit serve`: which weights to load, where to listen, and what one request may ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
from dit.config.sample import Precision, WeightsChoice

LOOPBACK = "127.0.0.1"


@dataclass
class ServeConfig(DictMixin):
    """`dit serve`: the checkpoint (as `dit sample` reads it), the address, and the server's limits."""

    ckpt: str = setting(
        "",
        help="a dit checkpoint (.pt), its .safetensors export, an official DiT .pt, a diffusers folder or a hub id",
        required=True,
    )
    weights: WeightsChoice = setting("ema", help="which weights of a training checkpoint")
    model: Optional[str] = setting(None, help="official files only: the size, e.g. DiT-XL/2 (our checkpoints carry it)")
    image_size: Optional[int] = setting(None, help="official files only: image side in pixels", bound=">0")
    num_classes: Optional[int] = setting(None, help="official files only: number of classes", bound=">0")
    vae: Optional[str] = setting(
        None, help="decoder: ema, mse, none or an AutoencoderKL folder (default: the recorded one)"
    )
    host: str = setting(LOOPBACK, help="address to listen on; 0.0.0.0 lets other machines in")
    port: int = setting(7860, help="TCP port", bound=">0")
    device: Optional[str] = setting(None, help="cuda or cpu (default: cuda when available)")
    precision: Precision = setting(
        "fp32", help="autocast precision of the DiT (the VAE decodes in fp32), as dit sample --precision"
    )
    previews: int = setting(
        8,
        help="decoded previews of the predicted images shown while a job runs (0: none; each costs a decode)",
        bound=">=0",
    )
    max_images: int = setting(16, help="images per request at most", bound=">0")
    max_steps: int = setting(1000, help="sampler steps per request at most", bound=">0")
    max_queue: int = setting(4, help="requests that may wait behind the running one", bound=">=0")

    def validate(self) -> "ServeConfig":
        """One-line errors for choices and bounds (``dit.serve.server.serve`` checks the port's range); returns self."""
        check_settings(self)
        return self

    def official(self) -> dict[str, Optional[object]]:
        """The settings that describe an official ``.pt`` file (``load_pipeline``'s keywords)."""
        return {"model": self.model, "image_size": self.image_size, "num_classes": self.num_classes, "vae": self.vae}
