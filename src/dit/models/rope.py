"""2-D axial rotary position embedding (RoPE) for the attention of image tokens.

Each head's width hd is split in two halves: pairs of the first half rotate by the token's row,
pairs of the second by its column, at frequencies ``theta^(-k/(hd/4))`` (k = 0..hd/4−1). A
rotation keeps every vector's norm, and the dot product of a rotated query at position p with a
rotated key at position p' depends on p − p' only (tests check both). Extra tokens (the
in-context conditioning tokens) get angle 0: they are not rotated.
"""

from __future__ import annotations

from typing import Tuple

import torch

ROPE_THETA = 10000.0


def rope_tables(
    grid: Tuple[int, int], head_dim: int, extra_tokens: int = 0, device=None, theta: float = ROPE_THETA
) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (T + extra, hd/2), tokens in row-major order."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head width divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)  # (hd/4,)
    gh, gw = grid
    rows = torch.arange(gh, dtype=torch.float64, device=device).repeat_interleave(gw)  # (T,)
    cols = torch.arange(gw, dtype=torch.float64, device=device).repeat(gh)  # (T,)
    angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)  # (T, hd/2)
    if extra_tokens:
        angles = torch.cat([angles, angles.new_zeros(extra_tokens, angles.shape[1])])  # (T + extra, hd/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x[2i], x[2i+1]) of x (N, H, L, hd) by the angles of cos/sin (L, hd/2)."""
    pairs = x.unflatten(-1, (-1, 2))  # (N, H, L, hd/2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]  # (N, H, L, hd/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (N, H, L, hd/2, 2)
    return out.flatten(-2)  # (N, H, L, hd)
