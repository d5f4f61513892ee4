"""Fine-tuning: start a run from pretrained weights (``dit train --init-from CKPT_OR_HUB_ID``).

Users fine-tune the released DiTs on their own classes and sizes (official DiT #100, fast-DiT #2).
Any file `dit sample` reads (our checkpoints and exports, official ``.pt``, diffusers folders) or a
hub id gives the model weights and, where the file holds them, the EMA weights (a file with one
set starts both from it). What cannot carry over is re-made, never silently dropped:

* ``pos_embed`` — the fixed 2-D sin-cos table of the new token grid (another image size or VAE
  downsampling); it is not learned, so the new model's own table is exact;
* ``y_embedder.embedding_table.weight`` — another class count: a new table initialised as at the
  start of training (N(0, 0.02)), the learned null-class row (classifier-free guidance's
  unconditional embedding) kept when both models have one.

Every other tensor must match in name and shape (same depth, width, patch size, channels,
learned Σ); a mismatch is a :class:`~dit.errors.UserError` naming the tensors and the source's
architecture. The architecture itself comes from the source when the run names none.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from dit.config import ModelConfig
from dit.errors import UserError
from dit.runtime.hub import resolve_pretrained
from dit.weights.formats import read_weights, resolve_config

StateDict = dict[str, torch.Tensor]
POS_EMBED = "pos_embed"
CLASS_TABLE = "y_embedder.embedding_table.weight"
ARCHITECTURE_FIELDS = ("name", "block", "patch_size", "hidden_size", "depth", "num_heads", "mlp_ratio")


@dataclass
class Pretrained:
    """Weights to start from: the model set, the EMA set (the same tensors when the file has one set)."""

    source: str
    path: Path
    format: str
    config: ModelConfig
    model: StateDict
    ema: StateDict
    step: Optional[int] = None


@dataclass
class InitReport:
    """What :func:`merge_pretrained` did, for the run log."""

    loaded: list[str] = field(default_factory=list)
    remade: dict[str, str] = field(default_factory=dict)  # key → what was made instead and why

    def summary(self) -> str:
        made = "; ".join(f"{k} {why}" for k, why in self.remade.items()) or "nothing (same classes and size)"
        return f"loaded {len(self.loaded)} tensors; re-made: {made}"


def read_pretrained(source: str, revision: Optional[str] = None) -> Pretrained:
    """Model and EMA weights of ``source`` (a path or hub id), without pickle beyond tensors."""
    path = resolve_pretrained(source, revision)
    ema = read_weights(path, "ema")
    model = read_weights(path, "model") if ema.format in ("dit-train", "official-train") else ema
    cfg = resolve_config(ema)
    step = ema.meta.get("step")
    return Pretrained(
        str(source),
        path,
        ema.format,
        cfg,
        model.state_dict,
        ema.state_dict,
        int(step) if isinstance(step, int) else None,
    )


def architecture_of(pretrained: ModelConfig, run: ModelConfig) -> ModelConfig:
    """``run`` with the pretrained model's architecture (size, block, patch): for a run that names none."""
    return dataclasses.replace(run, **{k: getattr(pretrained, k) for k in ARCHITECTURE_FIELDS})


def merge_pretrained(
    target: StateDict, source: StateDict, where: str, keep_null: bool = True
) -> tuple[StateDict, InitReport]:
    """``target`` (the new model's fresh state) with every tensor of ``source`` that fits; see the module doc.

    ``keep_null``: both class tables end with a null-class row (copied over when the tables differ).
    """
    report = InitReport()
    merged: StateDict = {}
    wrong = []
    for key, fresh in target.items():
        old = source.get(key)
        if old is not None and tuple(old.shape) == tuple(fresh.shape):
            merged[key] = old.to(fresh.dtype)
            report.loaded.append(key)
        elif key == POS_EMBED:
            merged[key] = fresh
            had = f"{old.shape[1]} tokens" if old is not None else "none"
            report.remade[key] = f"(the fixed sin-cos table for {fresh.shape[1]} tokens; the source had {had})"
        elif key == CLASS_TABLE and old is not None and old.shape[1:] == fresh.shape[1:]:
            merged[key] = fresh.clone()
            if keep_null:
                merged[key][-1] = old[-1]  # the null class is the last row of both tables
            kept = ", the learned null-class row kept" if keep_null else ""
            report.remade[key] = f"({old.shape[0]} → {fresh.shape[0]} rows: new classes initialised N(0, 0.02){kept})"
        else:
            wrong.append(f"{key} {tuple(fresh.shape)}" + (f" vs {tuple(old.shape)}" if old is not None else " missing"))
    extra = sorted(set(source) - set(target))
    if wrong or extra:
        parts = [f"mis-shaped or missing: {', '.join(wrong[:4])}" + (" ..." if len(wrong) > 4 else "")] if wrong else []
        parts += [f"not in this model: {', '.join(extra[:4])}" + (" ..." if len(extra) > 4 else "")] if extra else []
        raise UserError(
            f"--init-from {where} does not fit this model ({'; '.join(parts)}); only the class count and image size "
            "may differ: use the source's --model/--block/--learn-sigma and VAE "
            "(or leave --model unset to take its size)"
        )
    return merged, report


def initialise(model: torch.nn.Module, pretrained: Pretrained) -> tuple[StateDict, InitReport]:
    """Load ``pretrained.model`` into ``model`` (in place); returns the EMA state to start from and the report.

    The EMA state is the pretrained EMA where it fits and the model's own value for re-made tensors.
    """
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()}
    src = pretrained.config
    y_emb = getattr(model, "y_embedder", None)
    keep_null = bool(src.num_classes and src.class_dropout_prob > 0 and y_emb is not None and y_emb.has_null_class)
    model_sd, report = merge_pretrained(fresh, pretrained.model, pretrained.source, keep_null)
    ema_sd, _ = merge_pretrained(fresh, pretrained.ema, pretrained.source, keep_null)
    for key in report.remade:  # re-made tensors start equal in the model and its average
        ema_sd[key] = model_sd[key].clone()
    model.load_state_dict(model_sd, strict=True)
    return ema_sd, report


def describe(pretrained: Pretrained, report: InitReport) -> str:
    """The run log's line: where the weights came from and what was re-made."""
    step = f", step {pretrained.step}" if pretrained.step is not None else ""
    origin = f"{pretrained.source} ({pretrained.format}{step}, model and EMA weights)"
    return f"initialised from {origin}: {report.summary()}"
