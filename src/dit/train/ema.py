"""Exponential moving average of model weights, kept in fp32 and updated with foreach ops.

``ema ← d·ema + (1−d)·θ`` after every optimiser step (DiT uses d = 0.9999). With ``warmup`` the
decay of update n (0-based) is ``min(d, (1+n)/(10+n))`` so short runs get a useful average
instead of one stuck near the initial weights. Keys are the plain model's state-dict keys
(never a ``module.`` prefix); buffers are copied, not averaged.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def ema_decay(decay: float, num_updates: int, warmup: bool) -> float:
    """The decay used for update number ``num_updates`` (0-based)."""
    if not warmup:
        return float(decay)
    n = int(num_updates)
    return min(float(decay), (1.0 + n) / (10.0 + n))


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2) or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


class EMA:
    """fp32 shadow copies of a model's floating-point parameters (and its buffers).

    ``named_params``/``named_buffers`` come from the plain (unwrapped) model so the keys match
    its state dict. Under FSDP2 each rank averages its own shards; ``state_dict()`` then holds
    DTensors that the checkpoint code gathers.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.params: dict[str, torch.Tensor] = {
            k: p.detach().float().clone() for k, p in model.named_parameters() if p.is_floating_point()
        }
        self.buffers: dict[str, torch.Tensor] = {k: b.detach().clone() for k, b in model.named_buffers()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Blend the model's current weights in; returns the decay used."""
        d = ema_decay(self.decay, self.num_updates, self.warmup)
        current = dict(model.named_parameters())
        ema = [_local(self.params[k]) for k in self.params]
        new = [_local(current[k].detach()).float() for k in self.params]
        torch._foreach_lerp_(ema, new, 1.0 - d)  # ema + (1-d)(θ - ema) = d·ema + (1-d)·θ
        for k, b in model.named_buffers():
            if k in self.buffers:
                self.buffers[k].copy_(b)
        self.num_updates += 1
        return d

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights keyed like the model's state dict (fp32 parameters, buffers as they are)."""
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int | None = None) -> None:
        """Restore weights saved by :meth:`state_dict` (keys must match exactly)."""
        expected = set(self.params) | set(self.buffers)
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise KeyError(f"EMA keys differ: missing {missing[:5]}, unexpected {extra[:5]}")
        with torch.no_grad():
            for k, v in state.items():
                dst = self.params.get(k, self.buffers.get(k))
                _local(dst).copy_(_local(v) if hasattr(v, "to_local") else v)
        if num_updates is not None:
            self.num_updates = int(num_updates)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (same keys), casting to its dtypes."""
        current = dict(model.named_parameters())
        current.update(dict(model.named_buffers()))
        for k, v in self.state_dict().items():
            _local(current[k]).copy_(_local(v))

    def tensors(self) -> Iterable[torch.Tensor]:
        return list(self.params.values()) + list(self.buffers.values())
