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
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

BLOCK_DESIGNS = ("adaln-zero", "adaln", "cross-attn", "in-context")
LN_EPS = 1e-6

# Number of D-wide modulation vectors each design regresses from c.
_MODULATION_CHUNKS = {"adaln-zero": 6, "adaln": 4, "cross-attn": 0, "in-context": 0}


def modulate(x: torch.Tensor, shift: Optional[torch.Tensor], scale: Optional[torch.Tensor]) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-example (N, D) vectors broadcast over tokens."""
    if shift is None:
        return x
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (N, T, D)


def gated(x: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
    """adaLN-Zero residual gate (per-example (N, D)); identity when the design has no gate."""
    return x if gate is None else gate.unsqueeze(1) * x  # (N, T, D)


def multihead_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Split (N, L, D) q/k/v into heads, run scaled-dot-product attention, merge back to (N, Lq, D)."""
    n, lq, d = q.shape
    hd = d // num_heads
    q = q.view(n, lq, num_heads, hd).transpose(1, 2)  # (N, H, Lq, hd)
    k = k.view(n, k.shape[1], num_heads, hd).transpose(1, 2)  # (N, H, Lk, hd)
    v = v.view(n, v.shape[1], num_heads, hd).transpose(1, 2)  # (N, H, Lk, hd)
    out = F.scaled_dot_product_attention(q, k, v)  # (N, H, Lq, hd)
    return out.transpose(1, 2).reshape(n, lq, d)  # (N, Lq, D)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias), as timm's ``Attention``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 × (N, T, D)
        return self.proj(multihead_sdpa(q, k, v, self.num_heads))  # (N, T, D)


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


class DiTBlock(nn.Module):
    """One transformer block; ``design`` picks the conditioning mechanism (see module docstring).

    ``forward(x, c, context)``: x (N, T, D) tokens, c (N, D) the conditioning vector t_emb + y_emb,
    context (N, L, D) the conditioning tokens [t_emb, y_emb] (used by cross-attn only).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, design: str = "adaln-zero"):
        super().__init__()
        if design not in BLOCK_DESIGNS:
            raise ValueError(f"unknown block design {design!r}; choose one of {BLOCK_DESIGNS}")
        self.design = design
        chunks = _MODULATION_CHUNKS[design]
        affine = chunks == 0  # plain pre-LN blocks keep LayerNorm's own scale/shift
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=affine, eps=LN_EPS)
        self.attn = Attention(hidden_size, num_heads)
        if design == "cross-attn":
            self.norm_cross = nn.LayerNorm(hidden_size, elementwise_affine=affine, eps=LN_EPS)
            self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=affine, eps=LN_EPS)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
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

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(c)
        x = x + gated(self.attn(modulate(self.norm1(x), shift_msa, scale_msa)), gate_msa)  # (N, T, D)
        if self.design == "cross-attn":
            x = x + self.cross_attn(self.norm_cross(x), context)  # (N, T, D)
        x = x + gated(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), gate_mlp)  # (N, T, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then Linear(D, p·p·C_out): tokens → per-patch outputs.

    Used by every block design (the paper's Fig. 5 varies the blocks only; the official final
    layer is adaLN-modulated, so in-context and cross-attn models share it unchanged).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 × (N, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (N, T, p*p*C_out)
