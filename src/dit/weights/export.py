"""Writers of DiT weights in every supported format, and ``convert_checkpoint`` (what `dit convert` runs).

Targets (``to``):

* ``official``: a bare state dict ``.pt`` (what ``DiT-XL-2-256x256.pt`` is; no config);
* ``dit``: our weights file ``.pt`` (``{"version", "format", "<ema|model>": state dict, "config"}``),
  read by :func:`dit.weights.formats.load_model` without any flag;
* ``safetensors``: tensors plus the config in the safetensors metadata and a ``.json`` sidecar;
* ``diffusers``: a folder with ``transformer/`` (``DiTTransformer2DModel`` config + safetensors)
  and ``scheduler/`` (the DiT schedule); with a VAE also ``vae/`` and ``model_index.json``
  (a complete ``DiTPipeline`` with ``id2label``).

The tensors are written as read (same dtype, same values): conversions are bit-exact. The
config (size, input size, number of classes, null class, learned-Σ channels) and the image size
travel in every format but ``official``. Files are written atomically (temp + fsync + rename);
a folder is assembled beside its destination and renamed into place.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from dit.config import DiffusionConfig, ModelConfig
from dit.errors import UserError
from dit.runtime.outputs import refuse_existing, replace_folder
from dit.models.registry import build_model
from dit.runtime.checkpoint import (
    atomic_write_json,
    export_safetensors,
    save_checkpoint,
)
from dit.vae import VAECodec, load_codec
from dit.weights.diffusers_keys import (
    config_to_diffusers,
    official_to_diffusers,
    scheduler_config,
)
from dit.weights.formats import RawWeights, read_weights, resolve_config, sidecar_path
from dit.weights.shapes import check_fits, image_side

StateDict = Dict[str, torch.Tensor]
FORMATS = ("official", "dit", "safetensors", "diffusers")
WEIGHTS_FORMAT_VERSION = 1


def target_format(dst: str | Path, to: Optional[str] = None) -> str:
    """``to`` if given, else from DST: ``.safetensors`` → safetensors, ``.pt``/``.pth`` → dit, else diffusers."""
    if to is not None:
        if to not in FORMATS:
            raise UserError(f"unknown target format {to!r}; choose one of {', '.join(FORMATS)}")
        return to
    suffix = Path(dst).suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pt", ".pth"):
        return "dit"
    if suffix == "" or Path(dst).is_dir():
        return "diffusers"
    raise UserError(f"cannot tell the format of {dst} from its suffix; pass --to {'|'.join(FORMATS)}")


def _side(cfg: ModelConfig) -> int:
    return cfg.input_size if isinstance(cfg.input_size, int) else max(cfg.input_size)


def describe(cfg: ModelConfig, raw: RawWeights, class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The self-description written beside the weights: model, diffusion and data (image size, classes)."""
    data = dict(raw.meta.get("data") or {})
    data.setdefault("image_size", image_side(_side(cfg), cfg.in_channels))
    data["num_classes"] = cfg.num_classes
    data["null_class"] = cfg.num_classes if cfg.num_classes and cfg.class_dropout_prob > 0 else None
    if class_names is not None:
        data["class_names"] = list(class_names)
    diffusion = raw.meta.get("diffusion") or DiffusionConfig(learn_sigma=cfg.learn_sigma).to_dict()
    desc = {"model": cfg.to_dict(), "diffusion": diffusion, "data": data, "weights": raw.weights}
    if isinstance(raw.meta.get("sampling"), dict):  # the checkpoint's sampling defaults travel with its weights
        desc["sampling"] = raw.meta["sampling"]
    return desc


def known_class_names(
    cfg: ModelConfig, raw: RawWeights, class_names: Optional[Sequence[str]] = None
) -> Optional[List[str]]:
    """Class names given, else the file's own (training data or a pipeline's id2label), else None."""
    names = class_names or (raw.meta.get("data") or {}).get("class_names")
    if not names and isinstance(raw.meta.get("id2label"), dict):
        names = [raw.meta["id2label"].get(str(i), str(i)) for i in range(cfg.num_classes)]
    if names and len(names) != cfg.num_classes:
        raise UserError(f"{len(names)} class names for a model of {cfg.num_classes} classes; give one name per class")
    return list(names) if names else None


def class_labels(cfg: ModelConfig, raw: RawWeights, class_names: Optional[Sequence[str]] = None) -> List[str]:
    """Class names for ``id2label``: :func:`known_class_names`, else "0".."N-1"."""
    return known_class_names(cfg, raw, class_names) or [str(i) for i in range(cfg.num_classes)]


# ------------------------------------------------------------------------------ writers
def write_official(sd: StateDict, dst: Path) -> None:
    """A bare state dict, as the official released checkpoints are."""
    save_checkpoint(dict(sd), dst)


def write_dit(sd: StateDict, desc: Dict[str, Any], dst: Path) -> None:
    """Our self-describing weights file (loads with ``load_model`` and no flags)."""
    key = "model" if desc["weights"] == "model" else "ema"
    state = {
        "version": WEIGHTS_FORMAT_VERSION,
        "format": "dit-weights",
        "weights": desc["weights"],
        key: dict(sd),
        "config": {k: desc[k] for k in ("model", "diffusion", "data", "sampling") if k in desc},
    }
    save_checkpoint(state, dst)


def write_safetensors(sd: StateDict, desc: Dict[str, Any], dst: Path) -> None:
    """Safetensors with the description as metadata (JSON strings) and as a ``.json`` sidecar."""
    export_safetensors(sd, dst, metadata=desc)
    atomic_write_json(sidecar_path(dst), desc, sort_keys=True)


def _write_json(path: Path, obj: Dict[str, Any]) -> None:
    atomic_write_json(path, obj, sort_keys=True)


def write_diffusers(
    sd: StateDict,
    cfg: ModelConfig,
    dst: Path,
    scheduler: str = "ddim",
    vae: Optional[str] = None,
    id2label: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> List[str]:
    """A diffusers folder (transformer + scheduler; + vae + model_index.json with ``vae``).

    Returns notes for the user. The folder is built beside ``dst`` and renamed into place.
    """
    import diffusers

    notes: List[str] = []
    version = diffusers.__version__
    dcfg = {"_class_name": "DiTTransformer2DModel", "_diffusers_version": version, **config_to_diffusers(cfg)}
    dsd = official_to_diffusers(sd)
    sched_name, sched_cfg = _pipeline_scheduler(scheduler, cfg, vae is not None, notes)
    codec = _pipeline_vae(vae, cfg) if vae is not None else None
    dst = Path(dst)
    refuse_existing(dst, overwrite, "DST")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        export_safetensors(dsd, tmp / "transformer" / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
        _write_json(tmp / "transformer" / "config.json", dcfg)
        sched = {"_class_name": sched_name, "_diffusers_version": version, **sched_cfg}
        _write_json(tmp / "scheduler" / "scheduler_config.json", sched)
        if codec is not None:
            codec.vae.save_pretrained(str(tmp / "vae"), safe_serialization=True)
            _write_json(tmp / "model_index.json", _model_index(version, sched_name, id2label))
            if cfg.num_classes != 1000:
                notes.append(
                    f"DiTPipeline hard-codes the null class 1000; this model's null class is {cfg.num_classes}, "
                    "so use guidance_scale <= 1 in DiTPipeline or guide with `dit sample`"
                )
        replace_folder(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return notes


def _pipeline_scheduler(scheduler: str, cfg: ModelConfig, pipeline: bool, notes: List[str]) -> tuple[str, dict]:
    """The scheduler's class name and config; a DiTPipeline's DDPM falls back to a fixed variance."""
    if pipeline and scheduler == "ddpm" and cfg.learn_sigma:
        # DiTPipeline drops the Σ channels before scheduler.step, and DDPMScheduler's learned_range
        # then fails; the pipeline can only use a fixed variance.
        notes.append(
            "DiTPipeline discards the learned variance channels, so its DDPM scheduler uses fixed_small "
            "(β̃_t); call DDPMScheduler(variance_type='learned_range') yourself for the paper's learned Σ"
        )
        return scheduler_config("ddpm", learn_sigma=False)
    return scheduler_config(scheduler, learn_sigma=cfg.learn_sigma)


def _pipeline_vae(vae: str, cfg: ModelConfig) -> VAECodec:
    """The AutoencoderKL a DiTPipeline folder carries; it must match the model's latent channels."""
    codec = load_codec(vae)
    if not isinstance(codec, VAECodec):
        raise UserError(f"--vae {vae} is not an AutoencoderKL; a DiTPipeline needs one (ema, mse or a local folder)")
    if codec.latent_channels != cfg.in_channels:
        raise UserError(
            f"the VAE has {codec.latent_channels} latent channels, the model {cfg.in_channels}; "
            "pass the VAE it was trained with"
        )
    return codec


def _model_index(version: str, sched_name: str, id2label: Optional[Sequence[str]]) -> Dict[str, Any]:
    return {
        "_class_name": "DiTPipeline",
        "_diffusers_version": version,
        "id2label": {str(i): name for i, name in enumerate(id2label or [])},
        "scheduler": ["diffusers", sched_name],
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


# ------------------------------------------------------------------------------ the conversion
def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    to: Optional[str] = None,
    model: Optional[str] = None,
    image_size: Optional[int] = None,
    num_classes: Optional[int] = None,
    weights: str = "ema",
    vae: Optional[str] = None,
    scheduler: str = "ddim",
    class_names: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Convert ``src`` (any format ``load_model`` reads) to ``dst`` in format ``to``; returns a summary.

    The weights are checked against the model the config describes (names, shapes) before
    anything is written; tensors are written unchanged (bit-exact).
    """
    src, dst = Path(src), Path(dst)
    fmt = target_format(dst, to)
    _check_destination(src, dst, fmt, vae, overwrite)
    raw = read_weights(src, weights)
    cfg = resolve_config(raw, model, image_size, num_classes)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in build_model(cfg).state_dict().items()}
    check_fits(expected, raw.state_dict, str(src))
    if fmt in ("official", "diffusers") and cfg.options():
        raise UserError(
            f"{src} uses block options {cfg.options()} that the {fmt} format cannot describe; "
            "convert to dit (.pt) or safetensors, which carry them in the config"
        )
    desc = describe(cfg, raw, known_class_names(cfg, raw, class_names))
    if fmt == "diffusers":
        labels = class_labels(cfg, raw, class_names) if vae is not None else None
        notes = write_diffusers(raw.state_dict, cfg, dst, scheduler, vae, labels, overwrite)
    else:
        notes = _write_file(fmt, raw.state_dict, desc, dst)
    return {
        "source": str(src),
        "source_format": raw.format,
        "weights": raw.weights,
        "destination": str(dst),
        "format": fmt,
        "model": cfg.name or "custom",
        "config": cfg.to_dict(),
        "image_size": desc["data"]["image_size"],
        "num_classes": cfg.num_classes,
        "null_class": desc["data"]["null_class"],
        "learn_sigma": cfg.learn_sigma,
        "tensors": len(raw.state_dict),
        "notes": notes,
    }


def _check_destination(src: Path, dst: Path, fmt: str, vae: Optional[str], overwrite: bool) -> None:
    if vae is not None and fmt != "diffusers":
        raise UserError("--vae builds a DiTPipeline folder; use it with a diffusers destination (--to diffusers)")
    if src.resolve() == dst.resolve():
        raise UserError(f"source and destination are the same path ({src}); pick another destination")
    refuse_existing(dst, overwrite, "DST")  # every format, before the source is read


def _write_file(fmt: str, sd: StateDict, desc: Dict[str, Any], dst: Path) -> List[str]:
    """One-file formats (official, dit, safetensors); the notes for the user."""
    if fmt == "dit":
        write_dit(sd, desc, dst)
    elif fmt == "safetensors":
        write_safetensors(sd, desc, dst)
    else:
        write_official(sd, dst)
        data = desc["data"]
        return [
            "the official format stores no config; loading it infers the size from shapes (pass "
            f"--num-classes/--image-size if they differ from {data['num_classes']}/{data['image_size']})"
        ]
    return []
