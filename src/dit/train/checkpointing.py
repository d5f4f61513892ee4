"""Training checkpoints: gather the full state (collective under FSDP), write it, read and check it, restore it.

A checkpoint (``<run>/checkpoints/<step>.pt``) holds model, EMA, optimiser (keyed by parameter
name, so it moves between one process, DDP and FSDP), grad scaler, step, data position, RNG
states, the full config and the git revision; the EMA weights are exported beside it as
safetensors. Files are written atomically by :mod:`dit.runtime.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from dit.config import BLOCK_OPTIONS, DiffusionConfig, ModelConfig, TrainConfig
from dit.errors import UserError
from dit.runtime.checkpoint import (
    ema_export_path,
    export_safetensors,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    write_checksum,
)
from dit.runtime.revision import git_revision
from dit.train.ema import EMA

if TYPE_CHECKING:
    from dit.train.trainer import Trainer

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("model", "ema", "opt", "step", "config")


def gather_full_state(model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, fsdp: bool) -> tuple[dict, dict, dict]:
    """Model, EMA and optimiser state dicts as plain full tensors (a collective under FSDP)."""
    if fsdp:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd = get_model_state_dict(model, options=opts)
        opt_sd = get_optimizer_state_dict(model, opt, options=opts)
        ema_sd = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu() for k, v in ema.state_dict().items()}
        return model_sd, ema_sd, opt_sd
    return model.state_dict(), ema.state_dict(), get_optimizer_state_dict(model, opt)


def rng_state() -> dict[str, Any]:
    """The host and CUDA generator states (restored on resume)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def write_training_checkpoint(
    path: Path, state: dict[str, Any], ema_sd: dict, export_metadata: dict[str, Any], keep_last: int
) -> None:
    """Write ``state`` to ``path``, the EMA weights beside it as safetensors, then prune old checkpoints."""
    save_checkpoint({"version": CHECKPOINT_VERSION, **state}, path)
    write_checksum(export_safetensors(ema_sd, ema_export_path(path), metadata=export_metadata))
    prune_checkpoints(path.parent, keep_last)


def read_training_checkpoint(
    path: Path, model_config: dict[str, Any], global_batch_size: int, diffusion_config: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    """Load ``path`` (to CPU, without pickle) and check that it continues this run's objective (when
    ``diffusion_config`` is given), model and batch size."""
    state = load_checkpoint(path, map_location="cpu")  # every rank reads to CPU: no GPU-0 pile-up
    for key in REQUIRED_KEYS:
        if key not in state:
            raise UserError(f"{path} is not a training checkpoint (no {key!r}); pass one written by dit train")
    saved = state["config"]
    if diffusion_config is not None:  # first: another objective also means another model (learn_sigma)
        check_objective(path, saved, diffusion_config)
    have = saved.get("model") or {}
    if isinstance(have, dict) and not set(have) - set(model_config):  # fields added since: their defaults
        have = {**{k: v for k, v in ModelConfig().to_dict().items() if k in BLOCK_OPTIONS}, **have}
    if have != model_config:
        diff = ", ".join(
            f"{k} {have.get(k)!r} vs {model_config.get(k)!r}"
            for k in model_config
            if have.get(k) != model_config.get(k)
        )
        raise UserError(
            f"{path} is a checkpoint of another model (checkpoint vs this run: {diff}); "
            "use the same --model/--image-size/--vae/--num-classes or another --results-dir"
        )
    if saved.get("train", {}).get("global_batch_size") != global_batch_size:
        raise UserError(
            f"{path} was trained with --global-batch-size {saved['train'].get('global_batch_size')}; "
            "resume with the same value (the data position depends on it)"
        )
    return state


def check_objective(path: Path, saved: dict[str, Any], diffusion_config: dict[str, Any]) -> None:
    """Refuse to resume under another objective or timestep law (older checkpoints: the paper's)."""
    have = DiffusionConfig.from_dict(saved.get("diffusion") or {}).to_dict()
    diff = [f"{k} {have[k]!r} vs {v!r}" for k, v in diffusion_config.items() if have.get(k) != v]
    if diff:
        raise UserError(
            f"{path} was trained with another objective (checkpoint vs this run: {', '.join(diff)}); resume with "
            f"the same --recipe ({saved.get('train', {}).get('recipe', 'paper')}) and objective flags"
        )


# Settings a resumed run must share with its checkpoint: the optimiser state and the EMA average
# were built under them (a changed EMA schedule would silently reweight the average).
RESUME_FIXED = ("betas", "ema_type", "ema_decay", "ema_warmup", "ema_halflife_kimg", "ema_rampup_ratio", "ema_std")


def _saved_vs_now(saved_train: dict[str, Any], cfg: TrainConfig, keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """``(key, checkpoint value, this run's value)`` for each of ``keys`` that differs (older files: defaults)."""
    defaults = TrainConfig()
    diffs = []
    for key in keys:
        have, want = saved_train.get(key, getattr(defaults, key)), getattr(cfg, key)
        if isinstance(want, tuple):
            have = tuple(have)  # a stored tuple may come back as a list
        if have != want:
            diffs.append((key, have, want))
    return diffs


def check_resume_settings(path: Path, saved_train: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to resume with other :data:`RESUME_FIXED` settings (older checkpoints: the defaults)."""
    diffs = []
    for key, have, want in _saved_vs_now(saved_train, cfg, RESUME_FIXED):
        flag = f"--{key.replace('_', '-')}"
        diffs.append(f"{flag} {have!r} (checkpoint) vs {want!r}")
    if diffs:
        raise UserError(
            f"{path} was trained with other settings: {'; '.join(diffs)}; resume with the checkpoint's values"
        )


# Settings a resumed run may change (a lower lr after a divergence, a tighter clip): each change
# is reported in one line, so a resumed run's log says how it differs from its checkpoint.
RESUME_ADJUSTABLE = ("lr", "warmup_steps", "lr_schedule", "grad_clip", "weight_decay")


def resume_changes(saved_train: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``--flag old -> new`` for each :data:`RESUME_ADJUSTABLE` setting ``cfg`` changes (older files: defaults)."""
    return [
        f"--{key.replace('_', '-')} {have} -> {want}"
        for key, have, want in _saved_vs_now(saved_train, cfg, RESUME_ADJUSTABLE)
    ]


def restore_weights(model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, state: dict[str, Any], fsdp: bool) -> None:
    """Model, optimiser and EMA from a checkpoint's full state dicts (each rank takes its shards under FSDP)."""
    if fsdp:
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, state["model"], options=opts)
        set_optimizer_state_dict(model, opt, state["opt"], options=opts)
        _load_ema_sharded(ema, state["ema"])
    else:
        model.load_state_dict(state["model"], strict=True)
        set_optimizer_state_dict(model, opt, state["opt"])
        ema.load_state_dict(state["ema"])
    ema.num_updates = int(state.get("ema_updates", 0))


def restore_rng(state: dict[str, Any]) -> None:
    """The generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def load_full_ema(ema: EMA, full: dict[str, torch.Tensor]) -> None:
    """Copy full (unsharded) EMA tensors into ``ema``, each rank taking its shards under FSDP."""
    _load_ema_sharded(ema, full)


def _load_ema_sharded(ema: EMA, full: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, dst in ema.state_dict().items():
            src = full[k].to(dst.dtype)
            if isinstance(dst, DTensor):
                src = distribute_tensor(src.to(dst.device), dst.device_mesh, dst.placements)
                dst.to_local().copy_(src.to_local())
            else:
                dst.copy_(src)


def write_trainer_checkpoint(trainer: Trainer, path: Path, model_sd: dict, ema_sd: dict, opt_sd: dict) -> None:
    """The trainer's full state at ``path`` (rank 0) and its EMA weights exported beside it."""
    t = trainer
    state = {
        "model": model_sd,
        "ema": ema_sd,
        "ema_updates": t.ema.num_updates,
        "opt": opt_sd,
        "scaler": t.scaler.state_dict() if t.scaler is not None else {},
        "step": t.step,
        "epoch": t.epoch,
        "batch_in_epoch": t.batch_in_epoch,
        "skipped_steps": t.skipped_total,
        "rng": rng_state(),
        "config": t.config_dict(),
        "git": git_revision(),
    }
    export_metadata = {
        "model": t.model_cfg.to_dict(),
        "diffusion": t.diffusion_cfg.to_dict(),
        "data": dict(t.source.header),
        "sampling": t.sampling_defaults.to_dict(),
        "step": t.step,
        "ema": {"updates": t.ema.num_updates, "initial_weight": t.ema.schedule.initial_weight(t.ema.num_updates)},
    }
    write_training_checkpoint(path, state, ema_sd, export_metadata, t.cfg.keep_last)


def restore_trainer(trainer: Trainer, path: Path) -> dict[str, Any]:
    """Read and check checkpoint ``path`` against the run, restore weights, scaler and RNG; returns its state."""
    t = trainer
    state = read_training_checkpoint(path, t.model_cfg.to_dict(), t.cfg.global_batch_size, t.diffusion_cfg.to_dict())
    saved_train = state["config"].get("train", {})
    check_resume_settings(path, saved_train, t.cfg)
    changes = resume_changes(saved_train, t.cfg)
    if changes:
        t.logger.info(f"resuming with settings changed from {path}: {', '.join(changes)}")
    restore_weights(t.model, t.ema, t.opt, state, t.cfg.fsdp)
    if t.scaler is not None and state.get("scaler"):
        t.scaler.load_state_dict(state["scaler"])
    restore_rng(state)
    return state
