"""Input embeddings of DiT: patches, fixed 2-D position, diffusion timestep and class label.

Module and parameter names follow the official DiT code (``x_embedder.proj``,
``t_embedder.mlp``, ``y_embedder.embedding_table``) so official checkpoints load strictly.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from dit.errors import UserError

FREQUENCY_EMBEDDING_SIZE = 256  # width of the sinusoidal timestep features (paper, official code)


def timestep_embedding(
    t: torch.Tensor, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, exactly as the official DiT/ADM code.

    freqs_i = exp(-ln(max_period) * i / half) for i in 0..half-1 (half = dim // 2), and the
    embedding is ``cat[cos(t * freqs), sin(t * freqs)]`` (cos half first), zero-padded when dim
    is odd. Note diffusers divides by ``half - 1`` instead; we keep the official ``half``.
    """
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)  # (half,)
    freqs = torch.exp(-math.log(max_period) * i / half)  # (half,)
    args = t.reshape(-1, 1).float() * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (N, dim)
    return emb


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE-style 1-D sin-cos embedding: ``cat[sin(pos*w), cos(pos*w)]``, w_k = 10000^(-k/(dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    k = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)  # (dim/2,)
    omega = 1.0 / 10000.0**k  # (dim/2,)
    out = pos.reshape(-1, 1).double() * omega[None]  # (M, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # (M, dim)


def sincos_pos_embed_2d(dim: int, grid: Tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding for a (gh, gw) token grid, row-major tokens: (gh*gw, dim).

    Matches the official ``get_2d_sincos_pos_embed`` for square grids: the first half of the
    channels encodes the column index, the second half the row index (the official code's
    meshgrid order). Computed in float64 like the official numpy code; rectangular grids work.
    """
    if dim % 4:
        raise UserError(f"hidden_size {dim} must be divisible by 4 for the 2-D sin-cos position embedding")
    gh, gw = grid
    rows = torch.arange(gh, dtype=torch.float64).repeat_interleave(gw)  # (T,) row index of each token
    cols = torch.arange(gw, dtype=torch.float64).repeat(gh)  # (T,) column index of each token
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)  # (T, dim)


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches → tokens: a conv with kernel = stride = p, then flatten row-major."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (N, D, H/p, W/p)
        # Contiguous tokens: a transposed view here would carry its layout through every residual
        # add, so each LayerNorm and linear of every block would copy its input again.
        return x.flatten(2).transpose(1, 2).contiguous()  # (N, T, D)


def linear_at(seq: nn.Sequential, index: int) -> nn.Linear:
    """``seq[index]``, which must be an ``nn.Linear``: typed access to a layer of a Sequential, whose
    position (not a name) is what the official state-dict keys record."""
    layer = seq[index]
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"expected nn.Linear at index {index}, got {type(layer).__name__}")
    return layer


class TimestepEmbedder(nn.Module):
    """Timestep t → 256 sinusoidal features → Linear(256, D) → SiLU → Linear(D, D)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = FREQUENCY_EMBEDDING_SIZE):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_embedding(t, self.frequency_embedding_size)  # (N, 256)
        return self.mlp(freq.to(linear_at(self.mlp, 0).weight.dtype))  # (N, D)


class LabelEmbedder(nn.Module):
    """Class labels → vectors, with label dropout to the null class for classifier-free guidance.

    The table has ``num_classes + 1`` rows when ``dropout_prob > 0`` (row ``num_classes`` is the
    null class, as in the official code) and ``num_classes`` rows otherwise.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + int(use_cfg_embedding), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    @property
    def has_null_class(self) -> bool:
        return self.embedding_table.num_embeddings > self.num_classes

    def token_drop(self, labels: torch.Tensor, force_drop_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Replace labels by the null class where dropped: drawn with prob ``dropout_prob`` or forced.

        ``force_drop_ids`` is a bool (or 0/1) tensor of shape (N,) chosen by the caller (the
        trainer draws it from per-example generators so the result is independent of world size).
        """
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob  # (N,)
        else:
            drop = force_drop_ids.to(device=labels.device).reshape(-1) == 1  # (N,)
            if drop.shape[0] != labels.shape[0]:
                raise UserError(
                    f"drop mask has {drop.shape[0]} entries for {labels.shape[0]} labels; pass one per example"
                )
        if not self.has_null_class and bool(drop.any()):  # checked only then: no GPU sync per step
            raise UserError("labels cannot be dropped: the model has no null class (class_dropout_prob=0)")
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)  # (N,)
        return self.embedding_table(labels)  # (N, D)
