"""The model config: everything needed to rebuild a DiT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Optional, Tuple, Union, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_choices
from dit.errors import UserError

# Block designs of the paper's Fig. 5 (dit.models.blocks), the first is DiT's
BlockDesign = Literal["adaln-zero", "adaln", "cross-attn", "in-context"]
BLOCK_DESIGNS: tuple[str, ...] = get_args(BlockDesign)
# Block options of ModelConfig (dit.models.blocks); the first of each is the paper's
NormType = Literal["layer", "rms"]
NORM_TYPES: tuple[str, ...] = get_args(NormType)
QkNormType = Literal["none", "layer", "rms"]
QK_NORM_TYPES: tuple[str, ...] = get_args(QkNormType)
MlpType = Literal["gelu", "swiglu"]
MLP_TYPES: tuple[str, ...] = get_args(MlpType)


class ModelSizes(NamedTuple):
    """The size fields of a resolved :class:`ModelConfig` (every one set)."""

    patch_size: int
    hidden_size: int
    depth: int
    num_heads: int


@dataclass
class ModelConfig(DictMixin):
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
    block: BlockDesign = "adaln-zero"
    # Only for custom sizes (name=None); official names fill these from the registry.
    patch_size: Optional[int] = None
    hidden_size: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: float = 4.0
    # Block options for small-scale training (dit.models.blocks); the defaults are the paper's
    # DiT, whose keys, shapes and outputs they leave unchanged.
    norm: NormType = "layer"  # layer | rms: the block and final norms
    qk_norm: QkNormType = "none"  # none | layer | rms: per-head norm of queries and keys
    mlp: MlpType = "gelu"  # gelu | swiglu (hidden width 2/3: about the same parameters)
    rope: bool = False  # 2-D axial rotary position embedding on q/k (besides the fixed sin-cos table)
    long_skip: bool = False  # U-ViT long skips: block i's output joins block depth-1-i (concat + linear)

    def sizes(self) -> ModelSizes:
        """The size fields, which a resolved config (``dit.models.registry.resolve``) always has."""
        p, h, d, n = self.patch_size, self.hidden_size, self.depth, self.num_heads
        if p is None or h is None or d is None or n is None:
            raise UserError(f"model {self.name!r} has no size fields set; resolve it first (dit.models.resolve)")
        return ModelSizes(p, h, d, n)

    def options(self) -> dict[str, Any]:
        """The block options set away from the paper's DiT (empty for an official model)."""
        paper = ModelConfig()
        return {k: getattr(self, k) for k in BLOCK_OPTIONS if getattr(self, k) != getattr(paper, k)}

    def validate(self) -> "ModelConfig":
        """One-line errors for settings no DiT can be built with (``DiT.__init__`` calls it); returns self."""
        check_choices(self)
        if not 0.0 <= self.class_dropout_prob <= 1.0:  # NaN fails too
            raise UserError(f"--class-dropout-prob must be in [0, 1] (the paper: 0.1), got {self.class_dropout_prob}")
        return self


BLOCK_OPTIONS = ("norm", "qk_norm", "mlp", "rope", "long_skip")  # ModelConfig fields beyond the paper's DiT
