"""A stand-in for ``dit.Pipeline`` (issue 14) until it lands: the same calls, built on the one sampling path.

TEMPORARY: the server talks to a pipeline only through the calls below, which are the contract of
``dit.Pipeline`` (``from_pretrained``, ``class_names``, ``class_index``, ``to``, ``__call__``,
``protocol_card``). When ``dit.Pipeline`` is on main this module is deleted and the server uses it.

Images come from :class:`dit.evaluation.generate.ImageSampler`, the path of ``dit sample``: sample
``i`` of a request depends only on the weights, the settings, the seed and ``i``, so a request for
``classes=[c] * n`` gives the images of ``dit sample --class-labels c --num-samples n`` (same seed,
sampler, steps, guidance; one batch of up to 32, ``dit sample``'s default batch size).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from dit.config import SampleConfig
from dit.diffusion import create_diffusion
from dit.errors import UserError
from dit.evaluation import protocol
from dit.evaluation.generate import ImageSampler, label_mode, load_for_sampling

ClassRef = Union[int, str]


class AdapterPipeline:
    """``dit.Pipeline``'s contract over :func:`load_for_sampling` and :class:`ImageSampler`."""

    def __init__(self, ckpt: str, weights: str = "ema", device: Optional[str] = None):
        self.ckpt = str(ckpt)
        self.weights = weights
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.loaded = load_for_sampling(SampleConfig(ckpt=self.ckpt, weights=weights), self.device)
        self.diffusion = create_diffusion(
            **dataclasses.replace(self.loaded.diffusion_config, timestep_respacing="").to_dict()
        )
        self.num_classes = int(getattr(self.loaded.model, "num_classes", 0))
        self._sha256: Optional[str] = None

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, weights: str = "ema", device: Optional[str] = None,
                        revision: Optional[str] = None) -> "AdapterPipeline":
        if revision is not None or not Path(path_or_hub_id).exists():
            raise UserError(f"{path_or_hub_id}: no such file (hub ids need dit.Pipeline; give a local checkpoint)")
        return cls(path_or_hub_id, weights=weights, device=device)

    @property
    def class_names(self) -> Optional[list[str]]:
        return None  # names arrive with dit.Pipeline (ImageNet's and the ones stored in checkpoints)

    def class_index(self, name_or_id: ClassRef) -> int:
        """A class id from an id or its decimal string; UserError for anything else."""
        text = str(name_or_id).strip()
        if isinstance(name_or_id, bool) or not text.lstrip("-").isdigit():
            raise UserError(f"unknown class {name_or_id!r}: this model's classes are ids 0..{self.num_classes - 1}")
        k = int(text)
        if not 0 <= k < self.num_classes:
            raise UserError(f"unknown class {k}: this model's classes are ids 0..{self.num_classes - 1}")
        return k

    def to(self, device: str | torch.device, dtype: Optional[torch.dtype] = None) -> "AdapterPipeline":
        self.device = torch.device(device)
        self.loaded.model.to(self.device)
        self.loaded.codec.to(self.device) if hasattr(self.loaded.codec, "to") else None
        return self

    def _config(self, num_steps: Optional[int], cfg_scale: float, sampler: Optional[str], seed: int,
                guidance_interval: Optional[Sequence[int]]) -> SampleConfig:
        return SampleConfig(
            ckpt=self.ckpt, weights=self.weights, sampler=sampler or "ddpm",
            num_sampling_steps=int(num_steps or 250), cfg_scale=float(cfg_scale), seed=int(seed),
            guidance_interval=tuple(int(v) for v in guidance_interval) if guidance_interval else None,
        )

    def __call__(self, classes: Sequence[ClassRef], num_steps: Optional[int] = None, cfg_scale: float = 4.0,
                 sampler: Optional[str] = None, seed: int = 0, guidance_interval: Optional[Sequence[int]] = None,
                 output_type: str = "pil", callback: Optional[Callable[[int, int, torch.Tensor], None]] = None):
        if not math.isfinite(float(cfg_scale)):
            raise UserError(f"cfg_scale must be a finite number, got {cfg_scale}")
        cfg = self._config(num_steps, cfg_scale, sampler, seed, guidance_interval)
        sampler_obj = ImageSampler(self.loaded.model, self.diffusion, self.loaded.codec, cfg, self.device)
        labels = np.asarray([self.class_index(c) for c in classes], dtype=np.int64) if self.num_classes else None
        n = len(classes)
        steps = cfg.num_sampling_steps

        def on_step(i: int, t: int, x: torch.Tensor, pred_x0: torch.Tensor) -> None:
            if callback is not None:
                callback(i, steps, x)

        images = sampler_obj.images(list(range(n)), labels, callback=on_step)  # (N, H, W, 3) uint8
        if output_type == "np":
            return images
        return [Image.fromarray(im) for im in images]

    def protocol_card(self, classes: Sequence[ClassRef], num_steps: Optional[int] = None, cfg_scale: float = 4.0,
                      sampler: Optional[str] = None, seed: int = 0,
                      guidance_interval: Optional[Sequence[int]] = None) -> dict[str, Any]:
        """The card ``dit sample`` writes beside its output, for this call's settings."""
        cfg = self._config(num_steps, cfg_scale, sampler, seed, guidance_interval)
        sampler_obj = ImageSampler(self.loaded.model, self.diffusion, self.loaded.codec, cfg, self.device)
        labels = [self.class_index(c) for c in classes] if self.num_classes else None
        if self._sha256 is None:
            self._sha256 = protocol.file_sha256(self.ckpt)
        ckpt = self.loaded.checkpoint
        settings = {
            "checkpoint": {"sha256": self._sha256, "weights": ckpt.get("weights", self.weights),
                           "format": ckpt.get("format"), "step": ckpt.get("step")},
            "model": self.loaded.model_config.to_dict(),
            "diffusion": self.loaded.diffusion_config.to_dict(),
            **sampler_obj.settings(),
            "num_samples": len(classes),
            "class_labels": label_mode(self.num_classes, labels),
            "batch_size": len(classes),
        }
        extra = {"checkpoint_path": str(Path(self.ckpt).resolve()), **protocol.provenance(1, str(self.device))}
        return protocol.make_card(settings, "dit serve", extra)
