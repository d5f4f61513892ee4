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

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import nn

from dit.config import EMA_TYPES, TrainConfig

# The TrainConfig fields an EMASchedule is built from (see EMASchedule.from_config)
_SCHEDULE_FIELDS = (
    "ema_type",
    "ema_decay",
    "ema_warmup",
    "ema_halflife_kimg",
    "ema_rampup_ratio",
    "ema_std",
    "global_batch_size",
)


def ema_decay(decay: float, num_updates: int, warmup: bool) -> float:
    """The constant schedule's decay for update number ``num_updates`` (0-based)."""
    if not warmup:
        return float(decay)
    n = int(num_updates)
    return min(float(decay), (1.0 + n) / (10.0 + n))


def power_from_std(std: float) -> float:
    """γ of the power EMA whose averaging profile has relative standard deviation ``std`` (σ_rel).

    Karras et al. 2024, eq. 3: σ_rel² = (γ+1) / ((γ+2)² (γ+3)), i.e. the largest real root of
    γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0.
    """
    inv = float(std) ** -2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def std_from_power(power: float) -> float:
    """σ_rel of the power EMA with exponent γ (the inverse of :func:`power_from_std`)."""
    g = float(power)
    return math.sqrt((g + 1.0) / ((g + 2.0) ** 2 * (g + 3.0)))


@dataclass(frozen=True)
class EMASchedule:
    """How the decay of each EMA update is chosen (see the module docstring).

    ``batch_size`` is the global batch (images per update) the half-life is measured against;
    ``rampup_ratio=None`` keeps the half-life at ``halflife_kimg`` from the start.
    """

    kind: str = "constant"
    decay: float = 0.9999
    warmup: bool = False
    halflife_kimg: float = 500.0
    rampup_ratio: Optional[float] = 0.05
    batch_size: int = 256
    power: float = 6.94

    def decay_at(self, n: int) -> float:
        """β of update number ``n`` (0-based; ``n`` updates were made before it)."""
        if self.kind == "constant":
            return ema_decay(self.decay, n, self.warmup)
        if self.kind == "halflife":
            halflife = self.halflife_kimg * 1000.0
            if self.rampup_ratio is not None:
                halflife = min(halflife, n * self.batch_size * self.rampup_ratio)
            return 0.5 ** (self.batch_size / max(halflife, 1e-8))
        if self.kind == "power":
            t = n + 1
            return (1.0 - 1.0 / t) ** (self.power + 1.0)
        raise ValueError(f"unknown EMA type {self.kind!r}; use one of {EMA_TYPES}")

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "EMASchedule":
        """The schedule a run's settings describe (γ of the power EMA from ``ema_std``)."""
        return cls(
            kind=cfg.ema_type,
            decay=cfg.ema_decay,
            warmup=cfg.ema_warmup,
            halflife_kimg=cfg.ema_halflife_kimg,
            rampup_ratio=cfg.ema_rampup_ratio,
            batch_size=cfg.global_batch_size,
            power=power_from_std(cfg.ema_std),
        )

    def initial_weight(self, num_updates: int) -> float:
        """The weight the initial values still carry after ``num_updates`` updates: ∏ β_n.

        Every β ≤ 1, so the product only shrinks: below 1e-15 it is returned as 0.
        """
        if self.kind == "constant" and not self.warmup:
            return float(self.decay) ** int(num_updates)
        w = 1.0
        for n in range(int(num_updates)):
            w *= self.decay_at(n)
            if w < 1e-15:
                return 0.0
        return w


def initial_weight_of(meta: dict[str, Any]) -> Optional[float]:
    """The weight a checkpoint's EMA still gives the initial weights, from what the file records.

    ``meta`` is :class:`dit.weights.formats.RawWeights`'s: a training checkpoint records
    its ``train`` settings and ``ema_updates``; an ``.ema.safetensors`` export records
    ``ema.initial_weight``. None when the file says neither (official and converted weights).
    """
    ema = meta.get("ema")
    if isinstance(ema, dict) and isinstance(ema.get("initial_weight"), (int, float)):
        return float(ema["initial_weight"])
    train, updates = meta.get("train"), meta.get("ema_updates")
    if not isinstance(train, dict) or not isinstance(updates, int):
        return None
    fields = {k: train[k] for k in _SCHEDULE_FIELDS if k in train}
    return EMASchedule.from_config(TrainConfig(**fields)).initial_weight(updates)


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
