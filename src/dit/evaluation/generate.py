"""The one generation path: ``dit sample``, in-training sample grids and FID all draw images here.

Reproducibility contract: sample ``i`` is a function of (weights, settings, seed, i) only. Its
initial noise x_T comes from the generator keyed by (seed, i, SAMPLE_INIT) and, for stochastic
samplers, its per-step noise from the one keyed by (seed, i, SAMPLE_STEP) (see
:mod:`dit.runtime.rng`). Work is cut into *chunks* of ``batch_size`` consecutive global indices;
chunk k runs on rank k mod W, so a chunk's batch is the same whatever the number of processes
and the merged file is byte-identical for 1 or W ranks (with the same batch size; another batch
size changes the floating-point summation order, hence a few pixels by one level at most).

Files (:func:`generate_to_file`): every chunk becomes an atomic shard
``<out>.shards/<start>-<stop>.npz``; a rerun skips the shards already there (after checking
that they were made with the same settings), rank 0 merges them into ``<out>`` (``.npz``, a
``.png`` grid or, for ``DIR/``, a folder of one PNG per sample) and writes the protocol card
``<out>.protocol.json`` (``DIR.protocol.json`` for a folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dit.config import DiffusionConfig, ModelConfig, SampleConfig
from dit.diffusion import DEFAULT_SAMPLING, build_objective, check_sampler, flow_samplers
from dit.diffusion.guidance import guided_model_fn
from dit.diffusion.samplers import STOCHASTIC, sample
from dit.errors import UserError
from dit.evaluation import protocol
from dit.evaluation.writers import is_folder_output, to_uint8, write_npz, write_samples
from dit.models.dit import DiT
from dit.runtime import rng
from dit.runtime.checkpoint import atomic_write_json
from dit.runtime.distributed import (
    DistInfo,
    all_reduce_sum_int,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    set_tf32,
)
from dit.runtime.hub import resolve_pretrained
from dit.train.ema import initial_weight_of
from dit.vae import HUB_IDS, PIXEL_ID, load_codec
from dit.weights.formats import LoadedModel, load_model

# Warn when a checkpoint's EMA gives its initial (random) weights more than this share
STALE_EMA_WEIGHT = 0.5

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
OUTPUT_SUFFIXES = (".png", ".npz")
DEFAULT_NUM_SAMPLES = 16
OFFICIAL_VAE = "mse"  # what the official sample.py decodes with when nothing says otherwise
SETTINGS_FILE = "settings.json"


# ---------------------------------------------------------------------------------------------
# Pure pieces: labels and chunks
# ---------------------------------------------------------------------------------------------


def sample_labels(
    num_samples: int, num_classes: int, class_labels: Optional[Sequence[int]] = None
) -> Optional[np.ndarray]:
    """Label of every sample (N,) int64, or None for an unconditional model.

    Given ``class_labels``, sample i gets ``class_labels[i mod len]``; otherwise labels are
    balanced over all classes: sample i gets class ``i mod num_classes``.
    """
    if num_classes == 0:
        if class_labels:
            raise UserError("this model is unconditional (0 classes); drop --class-labels")
        return None
    if class_labels:
        bad = [c for c in class_labels if not 0 <= int(c) < num_classes]
        if bad:
            raise UserError(f"class labels {bad} are outside 0..{num_classes - 1}; the model has {num_classes} classes")
        table = np.asarray(class_labels, dtype=np.int64)
        return table[np.arange(num_samples) % len(table)]
    return np.arange(num_samples, dtype=np.int64) % num_classes


def label_mode(num_classes: int, class_labels: Optional[Sequence[int]]) -> dict[str, Any]:
    """How labels were chosen, for the protocol card."""
    if num_classes == 0:
        return {"mode": "unconditional"}
    if class_labels:
        return {"mode": "given", "labels": [int(c) for c in class_labels]}
    return {"mode": "balanced", "rule": "sample i has class i mod num_classes", "num_classes": int(num_classes)}


def chunk_ranges(num_samples: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of at most ``batch_size``: the unit of work, of shards and of resume."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    return [range(s, min(s + batch_size, num_samples)) for s in range(0, num_samples, batch_size)]


def rank_chunks(chunks: Sequence[range], rank: int, world_size: int) -> list[range]:
    """Chunk k belongs to rank k mod W (round robin keeps ranks balanced when chunks are equal)."""
    return [c for k, c in enumerate(chunks) if k % world_size == rank]


# ---------------------------------------------------------------------------------------------
# The sampler: model + diffusion + codec + settings → images for any global indices
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# In memory (training hooks): every rank draws its chunks, rank 0 gets all images
# ---------------------------------------------------------------------------------------------


def generate_images(
    sampler: ImageSampler,
    labels: Optional[np.ndarray],
    num_samples: int,
    batch_size: int,
    info: DistInfo = DistInfo(),
    progress: bool = False,
) -> Optional[np.ndarray]:
    """uint8 (N, H, W, 3) on rank 0 (None elsewhere), chunks split over ranks as for files."""
    mine = rank_chunks(chunk_ranges(num_samples, batch_size), info.rank, info.world_size)
    parts = {
        c.start: sampler.images(list(c), None if labels is None else labels[c.start : c.stop])
        for c in _progress(mine, progress and info.is_main, "sample")
    }
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        dist.gather_object(parts, gathered if info.is_main else None, dst=0)
        if not info.is_main:
            return None
        parts = {k: v for p in gathered for k, v in p.items()}
    return np.concatenate([parts[k] for k in sorted(parts)]) if parts else None


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="batch", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# Loading what to sample from
# ---------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A model ready to sample, its training diffusion config and the decoder to use."""

    model: DiT
    model_config: ModelConfig
    diffusion_config: DiffusionConfig
    codec: Any
    checkpoint: LoadedModel  # what the weights file says (path read, format, weights set, step, …)


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
        raise UserError("no checkpoint: pass --ckpt PATH (a dit checkpoint, a .safetensors export or an official .pt)")
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
            "pass the --vae the model was trained with (none for pixel space)"
        )
    if cfg.image_size is not None:
        want = tuple(s // codec.downsample for s in (cfg.image_size, cfg.image_size))
        if tuple(model.input_size) != want:
            raise UserError(
                f"--image-size {cfg.image_size} with this VAE (downsampling {codec.downsample}) needs a model input of "
                f"{want[0]}x{want[1]}, but the model takes {model.input_size[0]}x{model.input_size[1]}"
            )
    return Loaded(model.to(device), model.config, diffusion_cfg, codec, loaded)


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


# ---------------------------------------------------------------------------------------------
# Files: shards, resume, merge, card
# ---------------------------------------------------------------------------------------------


def shard_dir(out: str | Path) -> Path:
    """``<out>.shards/``: one ``.npz`` per finished chunk."""
    p = Path(out)
    return p.with_name(p.name + ".shards")


def shard_path(folder: Path, chunk: range) -> Path:
    return folder / f"{chunk.start:08d}-{chunk.stop:08d}.npz"


def shard_complete(path: Path, chunk: range, image_shape: tuple[int, int]) -> bool:
    """A shard that exists, opens and holds ``len(chunk)`` images of the right size."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return "arr_0" in f.files and f["arr_0"].shape == (len(chunk), *image_shape, 3)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # torn or foreign file
        return False


def _check_out(out: str) -> Path:
    p = Path(out)
    if is_folder_output(out):
        if p.is_dir() and any(p.iterdir()):
            raise UserError(f"--out {out}: the folder is not empty; give a new or empty folder for the PNGs")
        return p
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(
            f"--out {out}: give a .png (a grid), an .npz (arr_0 images, arr_1 labels) or a folder "
            "ending in / (one PNG per sample)"
        )
    return p


def num_samples_of(cfg: SampleConfig) -> int:
    """How many images ``cfg`` asks for: ``num_samples``, else one per given class label, else 16
    (``SampleConfig.validate`` has refused a count below 1)."""
    if cfg.num_samples is not None:
        return int(cfg.num_samples)
    return len(cfg.class_labels) if cfg.class_labels else DEFAULT_NUM_SAMPLES


def _prepare_shards(folder: Path, settings: dict, info: DistInfo) -> None:
    """Every rank checks existing shards' settings; then rank 0 records ours (resume safety)."""
    record = folder / SETTINGS_FILE
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except (OSError, ValueError):
            old = None
        diff = protocol.settings_mismatch(old, settings) if isinstance(old, dict) else ["(unreadable)"]
        if diff:
            raise UserError(
                f"{folder} holds shards of another run (settings differ: {', '.join(diff)}); "
                "rerun with the same settings to resume, or delete that folder to start over"
            )
    barrier(info)
    if info.is_main and not record.is_file():
        atomic_write_json(record, settings)
    barrier(info)


def merge_shards(folder: Path, chunks: Sequence[range], image_shape: tuple[int, int]) -> np.ndarray:
    """All shards in index order as one uint8 (N, H, W, 3) array (filled in place, one copy)."""
    n = chunks[-1].stop if chunks else 0
    images = np.empty((n, *image_shape, 3), dtype=np.uint8)
    for c in chunks:
        path = shard_path(folder, c)
        if not shard_complete(path, c, image_shape):
            raise UserError(f"shard {path} is missing or damaged; rerun the same command to regenerate it")
        with np.load(path, allow_pickle=False) as f:
            images[c.start : c.stop] = f["arr_0"]
    return images


def make_sampler(loaded: Loaded, cfg: SampleConfig, device: torch.device | str) -> ImageSampler:
    """The :class:`ImageSampler` of ``cfg``'s sampling settings over a loaded model (the training objective:
    a Gaussian diffusion, respaced by the sampler itself, or flow matching)."""

    diffusion = build_objective(loaded.diffusion_config, timestep_respacing="")
    return ImageSampler(loaded.model, diffusion, loaded.codec, cfg, device)


def sampling_settings(
    loaded: Loaded, sampler: ImageSampler, cfg: SampleConfig, num_samples: int, ckpt_hash: str
) -> dict:
    """The protocol card's ``settings``: everything that fixes the pixels (also the shards' resume check)."""
    return {
        "checkpoint": {
            "sha256": ckpt_hash,
            "weights": loaded.checkpoint.weights,
            "format": loaded.checkpoint.format,
            "step": loaded.checkpoint.step,
        },
        "model": loaded.model_config.to_dict(),
        "diffusion": loaded.diffusion_config.to_dict(),
        **sampler.settings(),
        "num_samples": int(num_samples),
        "class_labels": label_mode(sampler.num_classes, cfg.class_labels),
        "batch_size": int(cfg.batch_size),
    }


def generate_to_file(cfg: SampleConfig, info: Optional[DistInfo] = None, keep_shards: bool = False) -> Path:
    """Run ``dit sample`` for ``cfg`` (one process or one rank under torchrun); returns the output path.

    Ranks draw their chunks into shards (skipping shards already complete), rank 0 merges them
    into ``cfg.out``, writes the protocol card and removes the shards (unless ``keep_shards``).
    """

    out = _check_out(cfg.out)
    own_group = info is None
    info = info or init_distributed(cfg.device)
    set_tf32(info.device, cfg.tf32)
    try:
        loaded = load_for_sampling(cfg, info.device)
        ckpt_path = loaded.checkpoint.path  # the local file or folder (a hub id resolved)
        sampler = make_sampler(loaded, cfg, info.device)
        n = num_samples_of(cfg)
        labels = sample_labels(n, sampler.num_classes, cfg.class_labels)
        ckpt_hash = broadcast_object(protocol.file_sha256(ckpt_path) if info.is_main else None, info)
        settings = sampling_settings(loaded, sampler, cfg, n, ckpt_hash)
        folder = shard_dir(out)
        _prepare_shards(folder, settings, info)
        chunks = chunk_ranges(n, cfg.batch_size)
        todo = [
            c
            for c in rank_chunks(chunks, info.rank, info.world_size)
            if not shard_complete(shard_path(folder, c), c, sampler.image_shape)
        ]
        if info.is_main and (warning := stale_ema_warning(loaded.checkpoint, cfg.ckpt)):
            print(warning, file=sys.stderr)  # after every check that can fail: an error stays one line
        for c in _progress(todo, cfg.progress and info.is_main, f"sample (rank 0 of {info.world_size})"):
            images = sampler.images(list(c), None if labels is None else labels[c.start : c.stop])
            write_npz(shard_path(folder, c), images, None if labels is None else labels[c.start : c.stop])
        drawn = all_reduce_sum_int(len(todo), info)  # also the barrier before the merge
        if info.is_main:
            images = merge_shards(folder, chunks, sampler.image_shape)
            write_samples(str(out) + "/" if is_folder_output(cfg.out) else out, images, labels)
            extra = {
                "checkpoint_path": str(Path(ckpt_path).resolve()),
                **protocol.provenance(info.world_size, str(info.device)),
            }
            extra["shards"] = {"total": len(chunks), "drawn_now": drawn, "resumed": len(chunks) - drawn}
            protocol.write_card(out, protocol.make_card(settings, out, extra))
            if not keep_shards:
                shutil.rmtree(folder, ignore_errors=True)
        barrier(info)
        return out
    finally:
        if own_group:
            cleanup(info)
