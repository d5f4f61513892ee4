"""`dit sample`'s file output: draw every chunk into a shard, merge, write the protocol card.

Every chunk becomes an atomic shard (:mod:`dit.sampling.shards`); a rerun skips the shards already
there, rank 0 merges them into ``<out>`` (``.npz``, a ``.png`` grid or, for ``DIR/``, a folder of
one PNG per sample) and writes ``<out>.protocol.json`` (``DIR.protocol.json`` for a folder). Chunk
k runs on rank k mod W, so the merged file is byte-identical for 1 or W ranks (with the same batch
size; another batch size changes the floating-point summation order, hence a few pixels by one
level at most).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional

from dit.config import GenerationRequest, SampleConfig
from dit.errors import UserError
from dit.runtime.distributed import (
    DistInfo,
    all_reduce_sum_int,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    set_tf32,
)
from dit.runtime.interrupt import StopRequest
from dit.runtime.outputs import refuse_existing
from dit.sampling import card
from dit.sampling.image_sampler import ImageSampler, make_sampler
from dit.sampling.in_memory import progress_bar
from dit.sampling.labels import chunk_ranges, num_samples_of, rank_chunks, sample_labels
from dit.sampling.load import Loaded, load_for_sampling, stale_ema_warning
from dit.sampling.shards import merge_shards, prepare_shards, shard_complete, shard_dir, shard_path
from dit.sampling.writers import is_folder_output, write_npz, write_samples

OUTPUT_SUFFIXES = (".png", ".npz")


def check_out(out: str, overwrite: bool = False) -> Path:
    """``out`` as a path, or one line saying what is wrong: an unknown kind, or an existing output without
    ``overwrite`` (:func:`dit.runtime.outputs.refuse_existing`; an empty folder is used as it is)."""
    p = Path(out)
    if not is_folder_output(out) and p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(
            f"--out {out}: give a .png (a grid), an .npz (arr_0 images, arr_1 labels) or a folder "
            "ending in / (one PNG per sample)"
        )
    if not shard_dir(p).is_dir():  # with its shards: a run killed after the merge, resumed (settings checked there)
        refuse_existing(p, overwrite, "--out")
    return p


def checkpoint_record(loaded: Loaded, sha256: str) -> dict:
    """The card's ``checkpoint``: which file (its hash), which weights of it, its format and step."""
    c = loaded.checkpoint
    return {"sha256": sha256, "weights": c.weights, "format": c.format, "step": c.step}


def loaded_card_settings(
    loaded: Loaded, sha256: str, sampler: ImageSampler, n: int, request: GenerationRequest
) -> dict:
    """The card's ``settings`` of drawing ``n`` images of ``request`` from a loaded checkpoint (`dit sample`
    and the Pipeline write the same card for the same draw)."""
    return card.card_settings(
        checkpoint_record(loaded, sha256),
        loaded.model_config,
        loaded.diffusion_config,
        sampler,
        n,
        request.class_labels,
        request.batch_size,
    )


def generate_to_file(
    cfg: SampleConfig, request: GenerationRequest, info: Optional[DistInfo] = None, keep_shards: bool = False
) -> Path:
    """Run ``dit sample`` for ``cfg`` and ``request`` (one process or one rank under torchrun); returns the
    output path.

    Ranks draw their chunks into shards (skipping shards already complete), rank 0 merges them
    into ``cfg.out``, writes the protocol card and removes the shards (unless ``keep_shards``).
    """

    out = check_out(cfg.out, cfg.overwrite)
    request.validate()  # before the (possibly large) checkpoint is read
    own_group = info is None
    info = info or init_distributed(cfg.device)
    set_tf32(info.device, cfg.tf32)
    try:
        with StopRequest() as stop:  # Ctrl-C honoured between batches, never lost in a finalizer
            _draw_to_file(cfg, request, out, info, keep_shards, stop)
        barrier(info)
        return out
    finally:
        if own_group:
            cleanup(info)


def _draw_to_file(
    cfg: SampleConfig, request: GenerationRequest, out: Path, info: DistInfo, keep_shards: bool, stop: StopRequest
) -> None:
    loaded = load_for_sampling(cfg, info.device, cfg.revision)
    ckpt_path = loaded.checkpoint.path  # the local file or folder (a hub id resolved)
    sampler = make_sampler(loaded, request, info.device)
    n = num_samples_of(request.num_samples, request.class_labels)
    labels = sample_labels(n, sampler.num_classes, request.class_labels)
    ckpt_hash = broadcast_object(
        (loaded.checkpoint.sha256 or card.file_sha256(ckpt_path)) if info.is_main else None, info
    )
    settings = loaded_card_settings(loaded, ckpt_hash, sampler, n, request)
    folder = shard_dir(out)
    prepare_shards(folder, settings, info)
    chunks = chunk_ranges(n, request.batch_size)
    todo = [
        c
        for c in rank_chunks(chunks, info.rank, info.world_size)
        if not shard_complete(shard_path(folder, c), c, sampler.image_shape)
    ]
    if info.is_main and (warning := stale_ema_warning(loaded.checkpoint, cfg.ckpt)):
        print(warning, file=sys.stderr)  # after every check that can fail: an error stays one line
    for c in progress_bar(todo, cfg.progress and info.is_main, f"sample (rank 0 of {info.world_size})"):
        stop.check()
        images = sampler.images(list(c), None if labels is None else labels[c.start : c.stop])
        write_npz(shard_path(folder, c), images, None if labels is None else labels[c.start : c.stop])
    stop.check()
    drawn = all_reduce_sum_int(len(todo), info)  # also the barrier before the merge
    if not info.is_main:
        return
    images = merge_shards(folder, chunks, sampler.image_shape)
    write_samples(str(out) + "/" if is_folder_output(cfg.out) else out, images, labels, cfg.overwrite)
    extra = {
        "checkpoint_path": str(Path(ckpt_path).resolve()),
        **card.provenance(info.world_size, str(info.device)),
        "shards": {"total": len(chunks), "drawn_now": drawn, "resumed": len(chunks) - drawn},
    }
    card.write_card(out, card.make_card(settings, out, extra))
    if not keep_shards:
        shutil.rmtree(folder, ignore_errors=True)
