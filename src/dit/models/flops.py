"""Parameter and compute counts of DiT models, the paper's way.

Convention (the paper's "Gflops", Table 4): multiply-accumulates (MACs) of one forward pass for
one image, every matrix product included — patch embedding, timestep MLP, adaLN modulations,
qkv/projection/MLP linears, the two attention matmuls (QKᵀ and AV), cross-attention and the
final layer. Element-wise work (norms, activations, softmax, the sinusoidal features) and the
label-table lookup are not counted. One MAC = one "flop" here; torch's FlopCounterMode reports
2 × MACs. Counting the official code this way gives DiT-XL/2 = 118.62 and DiT-S/2 = 6.06 Gflops.

Erratum: the paper prints DiT-L/8 as 5.73 Gflops, but the architecture gives 5.01 by every
count (the official code included); :data:`PAPER_GFLOPS` holds 5.01 and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional

import torch

from dit.config import BlockDesign, ModelConfig
from dit.errors import UserError
from dit.models.dit import as_hw
from dit.models.embeddings import FREQUENCY_EMBEDDING_SIZE
from dit.models.registry import build_model, model_names, resolve

VAE_DOWNSAMPLE = 8  # SD VAE: a 256×256 image becomes a 32×32×4 latent

# Paper Table 4 (256×256, adaLN-Zero): Gflops per image. L/8 corrected 5.73 → 5.01 (see module doc).
PAPER_GFLOPS = {
    "DiT-XL/2": 118.64, "DiT-XL/4": 29.05, "DiT-XL/8": 7.39,
    "DiT-L/2": 80.71, "DiT-L/4": 19.70, "DiT-L/8": 5.01,
    "DiT-B/2": 23.01, "DiT-B/4": 5.56, "DiT-B/8": 1.42,
    "DiT-S/2": 6.06, "DiT-S/4": 1.41, "DiT-S/8": 0.36,
}  # fmt: skip
L8_PRINTED_GFLOPS = 5.73  # what the paper prints for DiT-L/8
# Paper Table 1 parameter counts (millions), one per size.
PAPER_PARAMS_M = {"XL": 675.0, "L": 458.0, "B": 130.0, "S": 33.0}
# Other paper figures: XL/2 at 512×512, and the XL/2 block designs of Fig. 5 (256×256).
PAPER_XL2_512_GFLOPS = 524.6
PAPER_BLOCK_GFLOPS = {"in-context": 119.4, "cross-attn": 137.6, "adaln": 118.6, "adaln-zero": 118.6}


def paper_gflops(name: str, image_size: int = 256, block: str = "adaln-zero") -> Optional[float]:
    """The paper's Gflops for this setting, or None where the paper gives none."""
    if image_size == 256 and block == "adaln-zero":
        return PAPER_GFLOPS.get(name)
    if name == "DiT-XL/2" and image_size == 256:
        return PAPER_BLOCK_GFLOPS.get(block)
    if name == "DiT-XL/2" and image_size == 512 and block == "adaln-zero":
        return PAPER_XL2_512_GFLOPS
    return None


def paper_params_m(name: str) -> Optional[float]:
    """The paper's parameter count (millions) for an official name's size, or None."""
    if not name.startswith("DiT-"):
        return None
    return PAPER_PARAMS_M.get(name[len("DiT-") :].split("/")[0])


def count_params(cfg: ModelConfig) -> int:
    """Exact parameter count (frozen position embedding included), built on the meta device (instant)."""
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def num_tokens(cfg: ModelConfig) -> int:
    """Image tokens T = (H/p)·(W/p)."""
    r = resolve(cfg)
    h, w = as_hw(r.input_size)
    p = r.sizes().patch_size
    return (h // p) * (w // p)


def forward_macs(cfg: ModelConfig) -> int:
    """MACs of one forward pass for one image (see the module docstring for the convention)."""
    r = resolve(cfg)
    sizes = r.sizes()
    d, p, c = sizes.hidden_size, sizes.patch_size, r.in_channels
    c_out = 2 * c if r.learn_sigma else c
    t = num_tokens(r)
    n_cond = 1 + int(r.num_classes > 0)  # conditioning tokens [t_emb(, y_emb)]
    mlp_hidden = int(d * r.mlp_ratio)

    macs = t * (c * p * p) * d  # patch embedding (conv as a linear per token)
    macs += FREQUENCY_EMBEDDING_SIZE * d + d * d  # timestep MLP
    seq = t + n_cond if r.block == "in-context" else t  # tokens the blocks see
    per_block = seq * d * 3 * d + 2 * seq * seq * d + seq * d * d  # qkv, QKᵀ and AV, out projection
    per_block += 2 * seq * d * mlp_hidden  # MLP fc1 + fc2
    per_block += {"adaln-zero": 6, "adaln": 4}.get(r.block, 0) * d * d  # adaLN modulation
    if r.block == "cross-attn":
        per_block += t * d * d + n_cond * d * 2 * d + 2 * t * n_cond * d + t * d * d  # q, kv, QKᵀ/AV, proj
    macs += sizes.depth * per_block
    macs += d * 2 * d + t * d * p * p * c_out  # final adaLN modulation + final linear
    return macs


@dataclass
class FlopsRow:
    """One line of the cost table; ``paper_*`` are None where the paper gives no number."""

    name: str
    params: int
    tokens: int
    gflops: float
    paper_params_m: Optional[float]
    paper_gflops: Optional[float]

    @property
    def gflops_rel_diff(self) -> Optional[float]:
        return None if self.paper_gflops is None else self.gflops / self.paper_gflops - 1.0

    @property
    def params_rel_diff(self) -> Optional[float]:
        return None if self.paper_params_m is None else self.params / 1e6 / self.paper_params_m - 1.0


def latent_size(image_size: int) -> int:
    """Latent side for an image side (the SD VAE downsamples by 8)."""
    if image_size <= 0 or image_size % VAE_DOWNSAMPLE:
        raise UserError(
            f"image size {image_size} must be a positive multiple of {VAE_DOWNSAMPLE} (the VAE's downsampling)"
        )
    return image_size // VAE_DOWNSAMPLE


def flops_row(cfg: ModelConfig, image_size: int = 256) -> FlopsRow:
    """Params, tokens and Gflops of one config, beside the paper's figures for ``image_size``."""
    return FlopsRow(
        name=cfg.name or "custom",
        params=count_params(cfg),
        tokens=num_tokens(cfg),
        gflops=forward_macs(cfg) / 1e9,
        paper_params_m=paper_params_m(cfg.name or "")
        if cfg.block == "adaln-zero" and cfg.num_classes == 1000
        else None,
        paper_gflops=paper_gflops(cfg.name or "", image_size, cfg.block) if cfg.num_classes == 1000 else None,
    )


def flops_table(
    names: Optional[List[str]] = None, image_size: int = 256, block: BlockDesign = "adaln-zero", num_classes: int = 1000
) -> List[FlopsRow]:
    """Rows for the named models (default all 12) at ``image_size`` pixels (latent = image/8)."""
    base = ModelConfig(input_size=latent_size(image_size), num_classes=num_classes, block=block)
    return [flops_row(dataclasses.replace(base, name=n), image_size) for n in (names or model_names())]


def format_table(rows: List[FlopsRow]) -> str:
    """A fixed-width text table with the paper's numbers and relative differences."""

    def rel(x: Optional[float]) -> str:
        return "" if x is None else f"{100 * x:+.2f}%"

    def num(x: Optional[float], fmt: str) -> str:
        return "" if x is None else format(x, fmt)

    lines = [
        f"{'model':<10} {'params(M)':>10} {'paper':>7} {'diff':>7} {'tokens':>7} {'Gflops':>9} {'paper':>8} {'diff':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r.name:<10} {r.params / 1e6:>10.2f} {num(r.paper_params_m, '.0f'):>7} {rel(r.params_rel_diff):>7} "
            f"{r.tokens:>7} {r.gflops:>9.2f} {num(r.paper_gflops, '.2f'):>8} {rel(r.gflops_rel_diff):>8}"
        )
    return "\n".join(lines)
