"""Configuration dataclasses shared across the package.

Each config is a plain dataclass that round-trips through ``to_dict``/``from_dict`` so it can
be stored inside checkpoints and protocol cards (self-describing files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Union

from dit.errors import UserError


class _DictMixin:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}")
        return cls(**d)


@dataclass
class ModelConfig(_DictMixin):
    """Everything needed to rebuild a DiT (the keyword names of ``dit.models.DiT``).

    ``name`` is an official size such as ``"DiT-XL/2"`` (or ``None`` for a custom size, where
    hidden_size/depth/num_heads/patch_size are then required). ``input_size`` is the latent (or
    pixel) side, an int or an ``(H, W)`` pair.
    """

    name: Optional[str] = "DiT-XL/2"
    input_size: Union[int, Tuple[int, int]] = 32
    in_channels: int = 4
    num_classes: int = 1000
    learn_sigma: bool = True
    class_dropout_prob: float = 0.1
    block: str = "adaln-zero"
    # Only for custom sizes (name=None); official names fill these from the registry.
    patch_size: Optional[int] = None
    hidden_size: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: float = 4.0


@dataclass
class DiffusionConfig(_DictMixin):
    """Arguments of ``dit.diffusion.create_diffusion`` (ADM / DiT defaults)."""

    timestep_respacing: str = ""
    noise_schedule: str = "linear"
    use_kl: bool = False
    sigma_small: bool = False
    predict_xstart: bool = False
    learn_sigma: bool = True
    rescale_learned_sigmas: bool = False
    diffusion_steps: int = 1000
