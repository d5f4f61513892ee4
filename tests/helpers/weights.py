"""Shared set-up of the conversion tests: random DiT weights, tiny configs, a tiny local VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from dit.config import ModelConfig
from dit.models import build_model
from dit.models.dit import DiT
from dit.models.embeddings import sincos_pos_embed_2d


def tiny(**kw) -> ModelConfig:
    """A custom-size config (1-2 blocks, few heads) with keyword overrides."""
    base = dict(name=None, input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=5)
    base.update(kw)
    return ModelConfig(**base)


def random_weights(cfg: ModelConfig, seed: int = 0, std: float = 0.05) -> Dict[str, torch.Tensor]:
    """A state dict for ``cfg`` with every learned tensor N(0, std²) (no zero-init identity blocks).

    ``pos_embed`` is the fixed sin-cos table, as in every real DiT checkpoint. Built from the
    meta-device model's shapes, so no random init of the module is paid for.
    """
    with torch.device("meta"):
        net = build_model(cfg)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * std for k, s in shapes.items() if k != "pos_embed"}
    sd["pos_embed"] = sincos_pos_embed_2d(shapes["pos_embed"][-1], net.grid_size).float().unsqueeze(0)  # (1, T, D)
    return sd


def model_with(cfg: ModelConfig, sd: Dict[str, torch.Tensor]) -> DiT:
    """``cfg``'s DiT holding ``sd``, in eval mode (no label dropout)."""
    net = build_model(cfg)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def assert_same_tensors(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> None:
    """Same keys, and every tensor bit-identical (values, dtype, shape)."""
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))[:5]
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), f"{k} differs"


def make_tiny_vae(folder: Path, seed: int = 0) -> Path:
    """A small random AutoencoderKL with 4 latent channels and 8x downsampling, saved to ``folder``."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=32,
    )
    vae.save_pretrained(str(folder), safe_serialization=True)
    return folder
