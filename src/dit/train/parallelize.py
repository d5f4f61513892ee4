"""Apply parallelism, activation checkpointing and compilation to a model from the outside.

The model knows nothing about any of this (torchtitan's ``parallelize.py`` pattern). Every
transformation here keeps the plain model's state-dict keys: activation checkpointing swaps
each block's ``forward`` on the instance (no wrapper module, so no ``_checkpoint_wrapped_module``
in the keys), ``Module.compile()`` compiles in place, FSDP2 ``fully_shard`` keeps names, and
:func:`unwrap` strips DDP's ``module.`` so checkpoints and EMA never carry it.
"""

from __future__ import annotations

import functools
import weakref
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dit.errors import UserError
from dit.runtime.distributed import DistInfo


# Blocks whose forward is already wrapped: applying checkpointing twice would nest it.
_CHECKPOINTED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _checkpointed(forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():  # nothing to save memory for in eval/no_grad
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def apply_activation_checkpointing(blocks: nn.ModuleList) -> None:
    """Recompute each block's activations in backward instead of storing them (keys unchanged)."""
    for block in blocks:
        if block in _CHECKPOINTED:
            continue
        block.forward = _checkpointed(block.forward)
        _CHECKPOINTED.add(block)


def parallelize(
    model: nn.Module,
    info: DistInfo,
    *,
    grad_checkpointing: bool = False,
    fsdp: bool = False,
    compile: bool = False,
) -> nn.Module:
    """Return the module to train: ``model`` itself, or DDP around it.

    FSDP2 shards each block and then the root in place (the returned module is ``model``).
    DDP is used only when ``info.world_size > 1`` and not ``fsdp``; on one process the model is
    returned untouched apart from checkpointing/compilation.
    """
    blocks = getattr(model, "blocks", None)
    if grad_checkpointing:
        if blocks is None:
            raise UserError("--grad-checkpointing needs a model with a `blocks` list")
        apply_activation_checkpointing(blocks)
    if compile:
        for block in blocks if blocks is not None else [model]:
            block.compile()  # in place: state-dict keys unchanged
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not info.distributed:
            raise UserError("--fsdp needs several processes; launch with torchrun --nproc_per_node N")
        if blocks is None:
            raise UserError("--fsdp needs a model with a `blocks` list")
        for block in blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids: Optional[list[int]] = [info.device.index] if info.device.type == "cuda" else None
        return DDP(model, device_ids=device_ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / ``torch.compile`` wrappers (identity otherwise)."""
    while True:
        compiled_inner = getattr(model, "_orig_mod", None)
        if isinstance(compiled_inner, nn.Module):
            model = compiled_inner
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
