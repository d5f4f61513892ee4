"""What the trainer calls every K steps with the EMA model (sample grids, evaluation, user code).

The trainer knows only this protocol; the hooks themselves (``dit.evaluation.hooks``) are built
by the caller (``dit train``'s CLI) and passed in, so ``train`` never imports ``evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from torch import nn

if TYPE_CHECKING:
    from dit.train.trainer import Trainer


@runtime_checkable
class TrainCallback(Protocol):
    """``cb(step, ema_model, trainer)`` every ``cb.every`` steps on every rank (rank-aware hooks decide).

    ``ema_model`` is a plain model (eval mode) holding the EMA weights; ``trainer`` is the
    :class:`~dit.train.trainer.Trainer` (run_dir, info, diffusion, source, logger, cfg).
    """

    every: int
    name: str

    def __call__(self, step: int, ema_model: nn.Module, trainer: Any) -> None: ...


@dataclass
class EveryNSteps:
    """A :class:`TrainCallback` from a plain function ``fn(step, ema_model, trainer)``."""

    every: int
    fn: Callable[[int, nn.Module, "Trainer"], None]
    name: str = "callback"

    def __call__(self, step: int, ema_model: nn.Module, trainer: "Trainer") -> None:
        self.fn(step, ema_model, trainer)


def due(callbacks: list[TrainCallback], step: int) -> list[TrainCallback]:
    """The callbacks whose period divides ``step`` (a period of 0 never runs)."""
    return [cb for cb in callbacks if cb.every > 0 and step % cb.every == 0]
