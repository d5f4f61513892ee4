"""Transformer blocks of DiT: the paper's four conditioning designs (Fig. 5) in one block class.

One :class:`DiTBlock` serves every design; the design only decides which parts exist:

============  ===============================  ==========================  ==================
design        modulation from c                extra layer                 LayerNorms
============  ===============================  ==========================  ==================
adaln-zero    Linear(D, 6D): shift/scale/gate  —                           no affine, eps 1e-6
adaln         Linear(D, 4D): shift/scale       —                           no affine, eps 1e-6
cross-attn    —                                cross-attention to [t, y]   affine, eps 1e-6
in-context    —                                — ([t, y] are extra tokens) affine, eps 1e-6
============  ===============================  ==========================  ==================

The un-modulated designs use standard pre-LN ViT blocks, so their LayerNorms keep the usual
learnable affine (nothing else would scale/shift them). adaLN-Zero keys equal the official
ones (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, ``adaLN_modulation.1``).

Options for small-scale training, all off by default (then keys, shapes and outputs are the
official ones): ``norm="rms"`` (RMSNorm for the block and final norms), ``qk_norm`` (a norm
over each head's queries and keys, learnable scale), ``mlp="swiglu"`` (SiLU-gated MLP whose
hidden width is 2/3 of the GELU one: about the same parameters) and ``rope`` tables passed to
``forward`` (2-D RoPE on the self-attention's q/k, :mod:`dit.models.rope`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dit.config import BLOCK_DESIGNS, MLP_TYPES, NORM_TYPES, QK_NORM_TYPES
from dit.models.rope import apply_rope

Rope = Optional[Tuple[torch.Tensor, torch.Tensor]]  # (cos, sin), each (L, hd/2)

LN_EPS = 1e-6

# Number of D-wide modulation vectors each design regresses from c.
_MODULATION_CHUNKS = {"adaln-zero": 6, "adaln": 4, "cross-attn": 0, "in-context": 0}


def modulate(x: torch.Tensor, shift: Optional[torch.Tensor], scale: Optional[torch.Tensor]) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-example (N, D) vectors broadcast over tokens."""
    if shift is None:
        return x
    assert scale is not None, "adaLN regresses shift and scale together"
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (N, T, D)


def gated(x: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
    """adaLN-Zero residual gate (per-example (N, D)); identity when the design has no gate."""
    return x if gate is None else gate.unsqueeze(1) * x  # (N, T, D)


def make_norm(kind: str, dim: int, affine: bool) -> nn.Module:
    """LayerNorm (``"layer"``) or RMSNorm (``"rms"``) over the last ``dim`` features, eps 1e-6."""
    if kind == "rms":
        return nn.RMSNorm(dim, eps=LN_EPS, elementwise_affine=affine)
    return nn.LayerNorm(dim, elementwise_affine=affine, eps=LN_EPS)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, L, D) → (N, H, L, D/H)."""
    n, length, d = x.shape
    return x.view(n, length, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(N, H, L, hd) → (N, L, H·hd)."""
    n, h, length, hd = x.shape
    return x.transpose(1, 2).reshape(n, length, h * hd)


def multihead_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Split (N, L, D) q/k/v into heads, run scaled-dot-product attention, merge back to (N, Lq, D)."""
    q, k, v = (split_heads(t, num_heads) for t in (q, k, v))  # (N, H, L, hd) each
    return merge_heads(F.scaled_dot_product_attention(q, k, v))  # (N, Lq, D)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias), as timm's ``Attention``.

    ``qk_norm`` ("layer"/"rms") normalises each head's q and k (learnable scale); ``rope`` in
    ``forward`` rotates them by position. Neither exists by default (timm's plain attention).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: str = "none"):
        super().__init__()
        assert dim % num_heads == 0, f"width {dim}, {num_heads} heads: ModelConfig.validate() refuses it"
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm: Optional[nn.Module] = None
        self.k_norm: Optional[nn.Module] = None
        if qk_norm != "none":
            self.q_norm = make_norm(qk_norm, dim // num_heads, affine=True)
            self.k_norm = make_norm(qk_norm, dim // num_heads, affine=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))  # 3 × (N, H, T, hd)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))  # (N, T, D)


class CrossAttention(nn.Module):
    """Multi-head attention from image tokens (queries) to conditioning tokens (keys/values)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.q(x)  # (N, T, D)
        k, v = self.kv(context).chunk(2, dim=-1)  # 2 × (N, L, D)
        return self.proj(multihead_sdpa(q, k, v, self.num_heads))  # (N, T, D)


class Mlp(nn.Module):
    """fc1 → tanh-approximated GELU → fc2 (the official DiT MLP)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (N, T, D)


def swiglu_hidden(hidden: int) -> int:
    """SwiGLU width for a GELU MLP of width ``hidden``: 2/3 of it (3 matrices instead of 2)."""
    return max(1, round(2 * hidden / 3))


class SwiGLU(nn.Module):
    """fc1 (fused value and gate, D → 2H) → value · SiLU(gate) → fc2 (Shazeer 2020)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)  # 2 × (N, T, H)
        return self.fc2(value * F.silu(gate))  # (N, T, D)


class DiTBlock(nn.Module):
    """One transformer block; ``design`` picks the conditioning mechanism (see module docstring).

    ``forward(x, c, context, rope)``: x (N, T, D) tokens, c (N, D) the conditioning vector t_emb + y_emb,
    context (N, L, D) the conditioning tokens [t_emb, y_emb] (used by cross-attn only), rope the
    (cos, sin) tables of 2-D RoPE or None.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        design: str = "adaln-zero",
        norm: str = "layer",
        qk_norm: str = "none",
        mlp: str = "gelu",
    ):
        super().__init__()
        for value, choices in ((design, BLOCK_DESIGNS), (norm, NORM_TYPES), (qk_norm, QK_NORM_TYPES), (mlp, MLP_TYPES)):
            if value not in choices:
                raise ValueError(f"unknown block option {value!r}; choose one of {choices}")
        self.design = design
        chunks = _MODULATION_CHUNKS[design]
        affine = chunks == 0  # plain pre-LN blocks keep LayerNorm's own scale/shift
        self.norm1 = make_norm(norm, hidden_size, affine)
        self.attn = Attention(hidden_size, num_heads, qk_norm)
        if design == "cross-attn":
            self.norm_cross = make_norm(norm, hidden_size, affine)
            self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.norm2 = make_norm(norm, hidden_size, affine)
        hidden = int(hidden_size * mlp_ratio)
        self.mlp = SwiGLU(hidden_size, swiglu_hidden(hidden)) if mlp == "swiglu" else Mlp(hidden_size, hidden)
        if chunks:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, chunks * hidden_size, bias=True))

    def modulation(self, c: torch.Tensor):
        """(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp); None where absent."""
        if self.design == "adaln-zero":
            return self.adaLN_modulation(c).chunk(6, dim=1)  # 6 × (N, D)
        if self.design == "adaln":
            shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN_modulation(c).chunk(4, dim=1)  # 4 × (N, D)
            return shift_msa, scale_msa, None, shift_mlp, scale_mlp, None
        return (None,) * 6

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, context: Optional[torch.Tensor] = None, rope: Rope = None
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(c)
        x = x + gated(self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope), gate_msa)  # (N, T, D)
        if self.design == "cross-attn":
            x = x + self.cross_attn(self.norm_cross(x), context)  # (N, T, D)
        x = x + gated(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), gate_mlp)  # (N, T, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then Linear(D, p·p·C_out): tokens → per-patch outputs.

    Used by every block design (the paper's Fig. 5 varies the blocks only; the official final
    layer is adaLN-modulated, so in-context and cross-attn models share it unchanged).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, norm: str = "layer"):
        super().__init__()
        self.norm_final = make_norm(norm, hidden_size, affine=False)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 × (N, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (N, T, p*p*C_out)
