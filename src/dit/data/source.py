"""What the trainer trains on: an image folder or a latent cache, behind one interface.

``build_source`` looks at ``data_path`` (a latent cache is recognised by its header file) and
returns a :class:`TrainingSource` whose ``dataset`` yields ``(item, label)`` and whose
``prepare`` turns a collated batch into the DiT's x0 on the batch's device:

* image folder: mirror where ``flip_mask``, encode through the codec, draw the posterior sample
  with the per-example ``posterior_gens``, scale (pixel space: mirror only);
* latent cache: pick the stored mirror moments where ``flip_mask``, draw the sample with the same
  generators, scale. For the same generators and flip mask both paths give the same x0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Tuple, Union

import torch

from dit.data.image_folder import ImageFolder
from dit.data.latent_cache import (
    LatentCacheDataset,
    check_header,
    is_latent_cache,
    read_header,
)
from dit.errors import UserError
from dit.runtime.rng import randn_rows


class Codec(Protocol):
    """What a training source needs of its codec (``dit.vae.LatentCodec``, which data does not import)."""

    stochastic: bool
    scale_factor: float

    def encode_moments(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]: ...

    def sample(self, mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TrainingSource:
    """A dataset plus the recipe that turns its batches into model inputs.

    ``kind`` is ``"images"`` (items (3, H, W) in [-1, 1]) or ``"cache"`` (items
    (2, 2, C, h, w) = [orig/mirror][mean/std]). ``bad_images`` lists files skipped so far in this
    process (image folders; for a cache, those skipped at extraction).
    """

    dataset: torch.utils.data.Dataset
    codec: Codec
    num_classes: int
    class_names: list
    latent_shape: Tuple[int, int, int]
    header: dict
    flip: bool = True
    kind: str = "images"
    unconditional: bool = False

    @property
    def bad_images(self) -> dict:
        if self.kind == "cache":
            return dict(self.header.get("cache", {}).get("bad_images", {}))
        return dict(getattr(self.dataset, "bad_images", {}))

    def prepare(
        self,
        items: torch.Tensor,
        labels: torch.Tensor,
        flip_mask: Optional[torch.Tensor],
        posterior_gens: Sequence[torch.Generator],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(x0 (N, C, h, w) float32 scaled latents, labels (N,) int64) on ``items.device``.

        ``flip_mask`` (bool (N,)) is ignored (no mirror) when ``self.flip`` is False or it is None.
        """
        device = items.device
        n = items.shape[0]
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)  # (N,)
        if self.unconditional:
            labels = torch.zeros_like(labels)
        if flip_mask is None or not self.flip:
            flip_mask = torch.zeros(n, dtype=torch.bool, device=device)
        flip_mask = flip_mask.to(device=device, dtype=torch.bool)  # (N,)
        if self.kind == "cache":
            picked = items[torch.arange(n, device=device), flip_mask.long()]  # (N, 2, C, h, w)
            mean, std = picked[:, 0].float(), picked[:, 1].float()  # (N, C, h, w) each
        else:
            images = torch.where(flip_mask[:, None, None, None], items.flip(-1), items)  # (N, 3, H, W)
            if not self.codec.stochastic:
                return images.float() * self.codec.scale_factor, labels
            mean, std = self.codec.encode_moments(images)  # (N, C, h, w) each
            mean, std = mean.to(device), std.to(device)
        noise = randn_rows(mean.shape, posterior_gens, device=device)  # (N, C, h, w)
        return self.codec.sample(mean, std, noise), labels


def _check_cache_labels(header: dict, data_path: str | os.PathLike, num_classes: Optional[int]) -> None:
    """A class-conditional run needs a cache extracted with labels, and the number of classes it has."""
    if header["unconditional"]:
        raise UserError(
            f"latent cache {data_path} was extracted without labels (--unconditional); train with "
            f"--unconditional or re-extract from a folder with one sub-folder per class"
        )
    if num_classes is not None and num_classes != header["num_classes"]:
        raise UserError(
            f"--num-classes {num_classes} disagrees with latent cache {data_path}, which has "
            f"{header['num_classes']} classes; pass --num-classes {header['num_classes']}"
        )


def build_source(
    data_path: str | os.PathLike,
    image_size: int,
    codec,
    num_classes: Optional[int] = None,
    unconditional: bool = False,
    flip: bool = True,
    on_bad_image: str = "skip",
) -> TrainingSource:
    """An image folder tree or a ``dit extract-latents`` cache as a :class:`TrainingSource`.

    A cache made with another VAE id, scale factor or image size raises UserError naming both.
    """
    dataset: Union[LatentCacheDataset, ImageFolder]
    if is_latent_cache(data_path):
        header = read_header(data_path)
        check_header(header, codec, image_size, where=f"cache {data_path}")
        if not unconditional:
            _check_cache_labels(header, data_path, num_classes)
        dataset = LatentCacheDataset(data_path, header)
        names = [] if unconditional else list(header["class_names"])
        latent_shape = tuple(header["latent_shape"])
        kind, extra = "cache", {"cache": {k: v for k, v in header.items() if k != "shards"}}
    else:
        latent_shape = codec.latent_shape(image_size)
        folder = ImageFolder(data_path, image_size, num_classes, unconditional, on_bad_image)
        names = list(folder.class_names)
        dataset = folder
        kind, extra = "images", {}
    header = {
        "kind": kind,
        "data_path": str(data_path),
        "image_size": int(image_size),
        "num_items": len(dataset),
        "num_classes": 0 if unconditional else len(names),
        "class_names": names,
        "unconditional": bool(unconditional),
        "flip": bool(flip),
        "latent_shape": list(latent_shape),
        "vae": codec.to_dict(),
        **extra,
    }
    return TrainingSource(
        dataset=dataset,
        codec=codec,
        num_classes=header["num_classes"],
        class_names=names,
        latent_shape=tuple(latent_shape),
        header=header,
        flip=flip,
        kind=kind,
        unconditional=unconditional,
    )
