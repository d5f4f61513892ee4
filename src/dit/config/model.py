"""The model config: everything needed to rebuild a DiT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Optional, Tuple, Union, get_args

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
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


GROUP = "model and diffusion"  # the --help section of `dit train`


@dataclass
class ModelConfig(DictMixin):
    """Everything needed to rebuild a DiT (the keyword names of ``dit.models.DiT``).

    ``name`` is an official size such as ``"DiT-XL/2"`` (or ``None`` for a custom size, where
    hidden_size/depth/num_heads/patch_size are then required). ``input_size`` is the latent (or
    pixel) side, an int or an ``(H, W)`` pair.
    """

    name: Optional[str] = setting(
        "DiT-XL/2",
        help="official size such as DiT-XL/2 or DiT-S/8, ignored with --depth etc. "
        "(default: DiT-XL/2; with --init-from, the pretrained model's size)",
        flag="--model",
        group=GROUP,
    )
    input_size: Union[int, Tuple[int, int]] = setting(32, help="latent (or pixel) side, or (H, W)", cli=False)
    in_channels: int = setting(4, help="latent (or pixel) channels", cli=False)
    num_classes: int = setting(1000, help="number of classes (0: unconditional)", cli=False)
    learn_sigma: bool = setting(
        True,
        help="learn the variance (L_simple + L_vlb) as in the paper (default: on for the gaussian objective, off for "
        "flow)",
        group=GROUP,
    )
    class_dropout_prob: float = setting(0.1, help="probability a label is dropped to the null class", group=GROUP)
    block: BlockDesign = setting("adaln-zero", help="block design (paper Fig. 5)", group=GROUP)
    # Only for custom sizes (name=None); official names fill these from the registry.
    patch_size: Optional[int] = setting(None, help="custom size: patch side p", group=GROUP, bound=">0")
    hidden_size: Optional[int] = setting(None, help="custom size: token width D", group=GROUP, bound=">0")
    depth: Optional[int] = setting(
        None,
        help="custom size: number of blocks (with --hidden-size, --num-heads, --patch-size)",
        group=GROUP,
        bound=">0",
    )
    num_heads: Optional[int] = setting(None, help="custom size: attention heads", group=GROUP, bound=">0")
    mlp_ratio: float = setting(4.0, help="MLP hidden width / token width", cli=False)
    # Block options for small-scale training (dit.models.blocks); the defaults are the paper's
    # DiT, whose keys, shapes and outputs they leave unchanged.
    norm: NormType = setting("layer", help="block and final norms: layer (paper) or rms", group=GROUP)
    qk_norm: QkNormType = setting("none", help="normalise each head's queries and keys (none = paper)", group=GROUP)
    mlp: MlpType = setting("gelu", help="gelu (paper) or swiglu (2/3 the hidden width: same parameters)", group=GROUP)
    rope: bool = setting(False, help="2-D rotary position embedding on queries/keys", group=GROUP)
    long_skip: bool = setting(
        False, help="U-ViT long skips: block i's output feeds block depth-1-i (concat + linear)", group=GROUP
    )
    # A second time input, the interval t − r of MeanFlow's average velocity u(z_t, r, t): its own
    # timestep embedding, zero-initialised and added to t's (set by the trainer for --objective meanflow)
    interval_embedding: bool = setting(
        False, help="MeanFlow's interval embedding (set by --objective meanflow)", cli=False
    )

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
        check_settings(self)
        if not 0.0 <= self.class_dropout_prob <= 1.0:  # NaN fails too
            raise UserError(f"--class-dropout-prob must be in [0, 1] (the paper: 0.1), got {self.class_dropout_prob}")
        width, heads = self.hidden_size, self.num_heads
        if width is not None and heads is not None:
            if width % heads:
                raise UserError(f"hidden size {width} is not divisible by {heads} heads")
            if self.rope and (width // heads) % 4:
                raise UserError(f"rope needs a head width (hidden_size/num_heads = {width // heads}) divisible by 4")
        return self


BLOCK_OPTIONS = (
    "norm",
    "qk_norm",
    "mlp",
    "rope",
    "long_skip",
    "interval_embedding",
)  # ModelConfig fields beyond the paper's DiT
