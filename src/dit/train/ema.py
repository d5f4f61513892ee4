"""Exponential moving average of model weights, kept in fp32 and updated with foreach ops.

``ema ← β·ema + (1−β)·θ`` after every optimiser step. The decay β of update n (0-based) follows
an :class:`EMASchedule`:

* ``constant`` (the paper: β = 0.9999 from step 0). With ``warmup`` β = min(d, (1+n)/(10+n)).
  After a few hundred steps such an EMA is still mostly the initial weights (0.9999^500 ≈ 0.95).
* ``halflife`` (EDM, Karras et al. 2022): the half-life in images grows with training,
  h = min(H, ratio · images seen before the update), and β = 0.5^(batch / h). Update 0 has h = 0,
  so β = 0 and the EMA starts from the trained weights instead of the initial ones.
* ``power`` (EDM2, Karras et al. 2024): β = (1 − 1/t)^(γ+1) with t = n + 1. The EMA after T
  updates is Σ_t w_t θ_t with w_t = (t^(γ+1) − (t−1)^(γ+1)) / T^(γ+1) ≈ ∝ t^γ, at any T: its
  width relative to the run length (σ_rel) is fixed; :func:`power_from_std` turns σ_rel into γ.

Keys are the plain model's state-dict keys (never a ``module.`` prefix); buffers are copied, not
averaged.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from dit.weights.ema_schedule import (  # noqa: F401 (the schedule's home; re-exported for the trainer and tests)
    EMASchedule,
    ema_decay,
    initial_weight_of,
    power_from_std,
    std_from_power,
)


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2) or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


class EMA:
    """fp32 shadow copies of a model's floating-point parameters (and its buffers).

    ``named_params``/``named_buffers`` come from the plain (unwrapped) model so the keys match
    its state dict. Under FSDP2 each rank averages its own shards; ``state_dict()`` then holds
    DTensors that the checkpoint code gathers. ``schedule`` overrides ``decay``/``warmup``.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9999, warmup: bool = False, schedule: Optional[EMASchedule] = None
    ):
        self.schedule = schedule if schedule is not None else EMASchedule(decay=float(decay), warmup=bool(warmup))
        self.num_updates = 0
        self.params: dict[str, torch.Tensor] = {
            k: p.detach().float().clone() for k, p in model.named_parameters() if p.is_floating_point()
        }
        self.buffers: dict[str, torch.Tensor] = {k: b.detach().clone() for k, b in model.named_buffers()}

    @property
    def decay(self) -> float:
        return self.schedule.decay

    @property
    def warmup(self) -> bool:
        return self.schedule.warmup

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Blend the model's current weights in; returns the decay used."""
        d = self.schedule.decay_at(self.num_updates)
        current: dict[str, torch.Tensor] = dict(model.named_parameters())
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
                dst = self.params[k] if k in self.params else self.buffers[k]
                _local(dst).copy_(_local(v) if hasattr(v, "to_local") else v)
        if num_updates is not None:
            self.num_updates = int(num_updates)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (same keys), casting to its dtypes."""
        current: dict[str, torch.Tensor] = dict(model.named_parameters())
        current.update(dict(model.named_buffers()))
        for k, v in self.state_dict().items():
            _local(current[k]).copy_(_local(v))

    def tensors(self) -> Iterable[torch.Tensor]:
        return list(self.params.values()) + list(self.buffers.values())
