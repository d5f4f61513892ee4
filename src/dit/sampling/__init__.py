"""Drawing images from trained weights: the one generation path of `dit sample`, `dit.Pipeline`,
`dit serve`, the training hooks, `dit demo` and the study.

* :mod:`.load`: a model for sampling (any checkpoint format or hub id), its diffusion config and
  decoder (:func:`load_for_sampling` → :class:`Loaded`).
* :mod:`.image_sampler`: :class:`ImageSampler`, model + objective + codec + settings → uint8 images
  for any global sample indices (per-index noise: the same pixels in any batch or process).
* :mod:`.labels`: which label each sample gets, and the chunks work is cut into.
* :mod:`.card`: the protocol card (everything that fixed the pixels), one :func:`card_settings`.
* :mod:`.writers`: pixels, grids, ``.npz`` and PNG folders; :mod:`.shards` and :mod:`.to_file`:
  `dit sample`'s resumable, multi-process file output; :mod:`.in_memory`: the training hooks' draw.

A layer above ``weights`` and below ``train``: it never imports the trainer.
"""

from dit.sampling.card import card_settings, label_mode
from dit.sampling.image_sampler import ImageSampler, make_sampler
from dit.sampling.in_memory import generate_images
from dit.sampling.labels import chunk_ranges, num_samples_of, rank_chunks, sample_labels
from dit.sampling.load import Loaded, load_for_sampling, stale_ema_warning
from dit.sampling.shards import merge_shards, shard_complete, shard_dir, shard_path
from dit.sampling.to_file import generate_to_file

__all__ = [
    "ImageSampler",
    "Loaded",
    "card_settings",
    "chunk_ranges",
    "generate_images",
    "generate_to_file",
    "label_mode",
    "load_for_sampling",
    "make_sampler",
    "merge_shards",
    "num_samples_of",
    "rank_chunks",
    "sample_labels",
    "shard_complete",
    "shard_dir",
    "shard_path",
    "stale_ema_warning",
]
