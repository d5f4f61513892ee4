"""The one loader of DiT weights, whatever file they come in (used by `dit sample` and `dit convert`).

``load_model(path)`` recognises, from the path alone:

* a **training checkpoint** of ``dit train`` (``.pt``: ``model``, ``ema``, ``opt``, ``config``…);
* a **weights file** of ``dit convert --to dit`` (``.pt``: ``ema`` or ``model``, ``config``);
* our **safetensors** export (config in the safetensors metadata or a ``.json`` sidecar);
* an **official checkpoint** (``DiT-XL-2-256x256.pt``: a bare state dict);
* an **official train.py checkpoint** (``model``, ``ema``, ``opt``, ``args``);
* a **diffusers folder** (``DiTTransformer2DModel`` ``config.json`` + weights, or a pipeline
  folder with ``model_index.json`` and ``transformer/``).

EMA weights are chosen by default. Pickles are read with ``torch.load(weights_only=True)`` only
(``argparse.Namespace`` is the one extra class allowed, for official ``args``), so a file that
would run code is refused. Files without a config get one inferred from tensor shapes; a
mismatch names the missing, unexpected and mis-shaped keys and suggests the ``--model`` /
``--image-size`` / ``--num-classes`` that fit the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from dit.config import ModelConfig
from dit.errors import UserError
from dit.runtime.checkpoint import check_checksum
from dit.runtime.file_kind import TORCH_KINDS, why_unreadable
from dit.models.dit import DiT
from dit.models.registry import build_model, resolve
from dit.weights.diffusers_keys import (
    config_from_diffusers,
    diffusers_to_official,
)
from dit.weights.shapes import check_fits, image_side, infer_config, latent_side

StateDict = Dict[str, torch.Tensor]

WEIGHTS_CHOICES = ("ema", "model")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass
class RawWeights:
    """Weights read from a file, in official keys, with whatever the file says about them.

    ``format``: dit-train | dit-weights | safetensors | official | official-train | diffusers.
    ``weights``: ema | model | unknown (a file with one set whose origin it does not record).
    ``config``: the model config the file carries (None when it must be inferred from shapes).
    ``meta``: the rest the file records (diffusion, data, step, official args, …).
    """

    state_dict: StateDict
    format: str
    weights: str
    config: Optional[ModelConfig] = None
    meta: Dict[str, Any] = field(default_factory=dict)
    sha256: Optional[str] = None  # the file's digest, verified against the checksum saved beside it (None: none)


# ------------------------------------------------------------------------------ reading files
def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one-line ``UserError``s for foreign/truncated/unsafe files."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, a pickle that would run code, …
        why = why_unreadable(path, "a checkpoint", e, TORCH_KINDS)
        raise UserError(
            f"cannot load {path}: {why}; pass a DiT checkpoint, a .safetensors file or a diffusers folder"
        ) from None


def _read_safetensors(path: Path) -> Tuple[StateDict, Dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = why_unreadable(path, "a safetensors file", e, ("a safetensors file",))
        raise UserError(f"cannot read {path} as safetensors: {why}; pass an intact .safetensors file") from None


def _strip_prefixes(sd: StateDict) -> StateDict:
    """Drop DDP/compile wrappers' key prefixes (``module.``, ``_orig_mod.``) when every key has one."""
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    )


def _pick(state: dict, weights: str, path: Path) -> Tuple[StateDict, str]:
    """The ``weights`` set of a dict holding ``model`` and/or ``ema``; falls back to the one present."""
    if weights not in WEIGHTS_CHOICES:
        raise UserError(f"--weights must be one of {WEIGHTS_CHOICES}, got {weights!r}")
    present = [k for k in WEIGHTS_CHOICES if _is_state_dict(state.get(k))]
    if not present:
        raise UserError(f"{path} holds no model or EMA weights; pass a DiT checkpoint")
    chosen = weights if weights in present else present[0]
    return _strip_prefixes(dict(state[chosen])), chosen


def _config_from_dict(d: Any, where: str) -> Optional[ModelConfig]:
    if d is None:
        return None
    if isinstance(d, str):
        d = json.loads(d)
    if not isinstance(d, dict):
        raise UserError(f"{where}: the model config is not a mapping; the file is damaged")
    d = dict(d)
    if isinstance(d.get("input_size"), list):
        d["input_size"] = tuple(d["input_size"])
    return ModelConfig.from_dict(d)


def _meta_json(meta: Dict[str, str]) -> Dict[str, Any]:
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def sidecar_path(path: Path) -> Path:
    """The JSON config sidecar of a safetensors file: ``x.safetensors`` → ``x.json``."""
    return path.with_suffix(".json")


def _read_diffusers(path: Path) -> RawWeights:
    root = path
    if not (path / "config.json").is_file():
        root = path / "transformer"
        if not (root / "config.json").is_file():
            raise UserError(f"{path} is a diffusers folder without transformer/config.json; not a DiT pipeline")
    try:
        dcfg = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {root / 'config.json'} ({e}); the diffusers folder is damaged") from None
    if dcfg.get("_class_name") not in (None, "DiTTransformer2DModel", "Transformer2DModel"):
        raise UserError(f"{root} holds a diffusers {dcfg.get('_class_name')}, not a DiT transformer")
    files = [root / n for n in _DIFFUSERS_WEIGHTS if (root / n).is_file()]
    if not files:
        raise UserError(
            f"{root} has no {' or '.join(_DIFFUSERS_WEIGHTS)}; sharded or missing weights are not supported"
        )
    if files[0].suffix == ".safetensors":
        dsd, _ = _read_safetensors(files[0])
    else:
        dsd = safe_torch_load(files[0])
        if not _is_state_dict(dsd):
            raise UserError(f"{files[0]} is not a state dict; the diffusers folder is damaged")
    cfg = config_from_diffusers(dcfg)
    sd = diffusers_to_official(dsd, sample_size=int(dcfg.get("sample_size", 32)))
    meta: Dict[str, Any] = {"diffusers_config": dcfg}
    if (path / "vae" / "config.json").is_file():  # a pipeline's own VAE: what `dit sample` should decode with
        meta["data"] = {"vae": {"id": "diffusers-pipeline", "source": str((path / "vae").resolve())}}
    if (path / "model_index.json").is_file():
        try:
            meta["id2label"] = json.loads((path / "model_index.json").read_text()).get("id2label")
        except (OSError, ValueError):
            pass
    return RawWeights(sd, "diffusers", "unknown", cfg, meta)


def detect_format(path: str | Path) -> str:
    """``diffusers`` (a folder), ``safetensors`` or ``pickle`` (``.pt``/``.pth``/``.bin``/other) from the path."""
    p = Path(path)
    if p.is_dir():
        if any((p / n).is_file() for n in ("model_index.json", "config.json", "transformer/config.json")):
            return "diffusers"
        raise UserError(
            f"{p} is a folder without model_index.json or (transformer/)config.json; "
            "pass a checkpoint file or a diffusers folder"
        )
    if not p.is_file():
        raise UserError(f"{p} does not exist; pass a checkpoint file (.pt, .safetensors) or a diffusers folder")
    with open(p, "rb") as f:
        head = f.read(16)
    if p.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):  # 8-byte header length, then JSON
        return "safetensors"
    return "pickle"


def read_weights(path: str | Path, weights: str = "ema") -> RawWeights:
    """Read weights (official keys) and whatever config/metadata ``path`` carries; see the module doc."""
    p = Path(path)
    if weights not in WEIGHTS_CHOICES:
        raise UserError(f"--weights must be one of {WEIGHTS_CHOICES}, got {weights!r}")
    kind = detect_format(p)
    if kind == "diffusers":
        return _read_diffusers(p)
    problem, sha256 = check_checksum(p)  # training writes <file>.sha256 beside its .pt and .ema.safetensors
    if problem is not None:
        raise UserError(f"weights file {p} is damaged: {problem}; use another checkpoint")
    return dataclasses.replace(_read_file(p, kind, weights), sha256=sha256)


def _read_file(p: Path, kind: str, weights: str) -> RawWeights:
    """The weights of a single safetensors or pickle file ``p`` (``kind``: :func:`detect_format`'s)."""
    if kind == "safetensors":
        sd, raw_meta = _read_safetensors(p)
        meta = _meta_json(raw_meta)
        if "model" not in meta and sidecar_path(p).is_file():
            try:
                meta = json.loads(sidecar_path(p).read_text())
            except (OSError, ValueError) as e:
                raise UserError(f"cannot read the config sidecar {sidecar_path(p)} ({e}); fix or delete it") from None
        cfg = _config_from_dict(meta.pop("model", None), str(p))
        which = str(meta.pop("weights", "ema" if p.name.endswith(".ema.safetensors") else "unknown"))
        return RawWeights(_strip_prefixes(sd), "safetensors", which, cfg, meta)

    obj = safe_torch_load(p)
    if _is_state_dict(obj):
        return RawWeights(_strip_prefixes(obj), "official", "unknown")
    if not isinstance(obj, dict):
        raise UserError(f"{p} holds a {type(obj).__name__}, not a checkpoint; pass a DiT checkpoint")
    if "config" in obj:  # ours: a training checkpoint or a converted weights file
        sd, chosen = _pick(obj, weights, p)
        conf = obj["config"] if isinstance(obj["config"], dict) else {}
        meta = {k: conf[k] for k in ("diffusion", "data", "train", "sampling") if k in conf}
        meta.update({k: obj[k] for k in ("step", "version", "ema_updates") if k in obj})
        fmt = "dit-train" if "opt" in obj else "dit-weights"
        if fmt == "dit-weights" and isinstance(obj.get("weights"), str):
            chosen = obj["weights"]  # what the converted weights were (ema, model or unknown)
        return RawWeights(sd, fmt, chosen, _config_from_dict(conf.get("model"), str(p)), meta)
    if "model" in obj or "ema" in obj:  # official train.py: model, ema, opt, args
        sd, chosen = _pick(obj, weights, p)
        args = obj.get("args")
        meta = {"args": vars(args) if isinstance(args, argparse.Namespace) else args}
        return RawWeights(sd, "official-train", chosen, None, meta)
    keys = ", ".join(sorted(map(str, obj))[:6])
    raise UserError(f"{p} is a dict without model weights (keys: {keys}); pass a DiT checkpoint")


# ------------------------------------------------------------------------------ the loader
def resolve_config(
    raw: RawWeights, model: Optional[str] = None, image_size: Optional[int] = None, num_classes: Optional[int] = None
) -> ModelConfig:
    """The config to build: the file's own (with explicit overrides) or one inferred from shapes."""
    if raw.config is None:
        return resolve(infer_config(raw.state_dict, model, image_size, num_classes))
    cfg = raw.config
    if model is not None and model != cfg.name:
        cfg = dataclasses.replace(cfg, name=model, patch_size=None, hidden_size=None, depth=None, num_heads=None)
    if image_size is not None:
        cfg = dataclasses.replace(cfg, input_size=latent_side(int(image_size), cfg.in_channels))
    if num_classes is not None:
        cfg = dataclasses.replace(cfg, num_classes=int(num_classes))
    return resolve(cfg)


def build_from_state_dict(cfg: ModelConfig, sd: StateDict, where: str = "the weights", device: Any = "cpu") -> DiT:
    """Build ``cfg``'s DiT without a random init (meta device) and load ``sd`` strictly, as fp32."""
    with torch.device("meta"):
        net = build_model(cfg)
    check_fits({k: v.shape for k, v in net.state_dict().items()}, sd, where)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    net.load_state_dict(sd, strict=True, assign=True)
    net.pos_embed.requires_grad_(False)  # fixed table (assign=True takes the loaded tensor's flag)
    return net.to(device)


@dataclass
class LoadedModel:
    """A DiT loaded by :func:`load_model` (eval mode) and what its file says about it."""

    model: DiT
    path: str
    format: str  # detect_format's name: dit-train, dit, safetensors, official, official-train, diffusers
    weights: str  # the set actually loaded: "ema" or "model"
    config: ModelConfig  # resolved (sizes of a named model filled in)
    image_size: int  # pixels
    num_classes: int
    null_class: Optional[int]  # the label that means "no class" (None: the model cannot drop labels)
    learn_sigma: bool
    class_names: Optional[list[str]]
    vae: Optional[Dict[str, Any]]  # the training data header's codec record
    diffusion: Optional[Dict[str, Any]]  # DiffusionConfig dict recorded by training
    step: Optional[int]
    meta: Dict[str, Any]  # everything else the file records
    sha256: Optional[str] = None  # RawWeights.sha256: verified at load, so the protocol card need not hash again


def load_model(
    path: str | Path,
    model: Optional[str] = None,
    image_size: Optional[int] = None,
    num_classes: Optional[int] = None,
    weights: str = "ema",
    device: Any = "cpu",
) -> LoadedModel:
    """Load a DiT from any supported file (see the module doc) in eval mode.

    ``model``/``image_size``/``num_classes`` override what the file says (``image_size`` in
    pixels: the latent side is image_size/8 for 4-channel models). ``weights`` picks EMA (default)
    or the raw model weights where the file holds both.
    """
    raw = read_weights(path, weights)
    cfg = resolve_config(raw, model, image_size, num_classes)
    net = build_from_state_dict(cfg, raw.state_dict, str(path), device).eval()
    meta_data = raw.meta.get("data")
    data = meta_data if isinstance(meta_data, dict) else {}
    side = cfg.input_size if isinstance(cfg.input_size, int) else max(cfg.input_size)
    names = data.get("class_names") or None
    if names is None and isinstance(raw.meta.get("id2label"), dict):
        names = [raw.meta["id2label"].get(str(i), str(i)) for i in range(cfg.num_classes)]
    return LoadedModel(
        model=net,
        path=str(path),
        format=raw.format,
        weights=raw.weights,
        config=cfg,
        image_size=int(image_size or data.get("image_size") or image_side(side, cfg.in_channels)),
        num_classes=cfg.num_classes,
        null_class=cfg.num_classes if (cfg.num_classes and cfg.class_dropout_prob > 0) else None,
        learn_sigma=cfg.learn_sigma,
        class_names=names,
        vae=data.get("vae"),
        diffusion=raw.meta.get("diffusion"),
        step=raw.meta.get("step"),
        meta=raw.meta,
        sha256=raw.sha256,
    )
