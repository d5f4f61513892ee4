"""The decay schedules of an EMA of weights, and how much of its initial weights a checkpoint's EMA still holds.

Pure arithmetic on the settings a run records (:class:`dit.config.TrainConfig`): the trainer's
:class:`dit.train.ema.EMA` follows an :class:`EMASchedule`, and sampling warns when a loaded EMA is
still mostly its random initial weights (:func:`initial_weight_of`). The schedules:

* ``constant`` (the paper: β = 0.9999 from step 0). With ``warmup`` β = min(d, (1+n)/(10+n)).
* ``halflife`` (EDM, Karras et al. 2022): h = min(H, ratio · images seen), β = 0.5^(batch / h).
* ``power`` (EDM2, Karras et al. 2024): β = (1 − 1/t)^(γ+1) with t = n + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

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
