"""Pure mappings between the official DiT state dict and diffusers' ``DiTTransformer2DModel``.

Official (and ours, same keys) → diffusers, per block ``i``:

==============================================  ==================================================
official                                        diffusers
==============================================  ==================================================
x_embedder.proj                                 pos_embed.proj
t_embedder.mlp.0 / .2                           transformer_blocks.i.norm1.emb.timestep_embedder.linear_1 / _2
y_embedder.embedding_table                      transformer_blocks.i.norm1.emb.class_embedder.embedding_table
blocks.i.adaLN_modulation.1                     transformer_blocks.i.norm1.linear
blocks.i.attn.qkv (fused, rows q|k|v)           transformer_blocks.i.attn1.to_q / to_k / to_v
blocks.i.attn.proj                              transformer_blocks.i.attn1.to_out.0
blocks.i.mlp.fc1 / fc2                          transformer_blocks.i.ff.net.0.proj / ff.net.2
final_layer.adaLN_modulation.1                  proj_out_1
final_layer.linear                              proj_out_2
pos_embed (fixed sin-cos)                       — (diffusers recomputes it)
==============================================  ==================================================

diffusers gives every block its own copy of the timestep and class embedders (its final layer
uses block 0's); going back we take block 0's copy and insist the others are identical. The
modulation chunk orders agree (shift, scale, gate for attention then MLP; shift, scale for
the final layer), so those weights map unchanged.

Two constants differ in diffusers' DiT and are *not* weights: its timestep features use
frequencies exp(−ln(1e4)·i/127) (``downscale_freq_shift=1``) where the official model uses
i/128, and its pre-MLP LayerNorm eps is the config's ``norm_eps`` (default 1e-5, official 1e-6;
our converter writes 1e-6). :func:`make_diffusers_official` patches a loaded model to the
official constants. Everything here is a pure function of tensors and dicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Dict, Optional

import torch

from dit.config import ModelConfig
from dit.errors import UserError
from dit.models.embeddings import sincos_pos_embed_2d
from dit.models.registry import SIZES, model_names, size_of

StateDict = Dict[str, torch.Tensor]

NUM_TRAIN_TIMESTEPS = 1000  # the DiT schedule: linear β from 1e-4 to 0.02 over 1000 steps
BETA_START, BETA_END = 1e-4, 0.02
OFFICIAL_LN_EPS = 1e-6

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_DBLOCK = re.compile(r"^transformer_blocks\.(\d+)\.")


def _depth(sd: StateDict, pattern: re.Pattern) -> int:
    ids = {int(m.group(1)) for k in sd for m in [pattern.match(k)] if m}
    return max(ids) + 1 if ids else 0


def _pos_embed(hidden_size: int, grid: int) -> torch.Tensor:
    """The fixed (1, T, D) sin-cos position embedding of a square grid (what DiT stores)."""
    return sincos_pos_embed_2d(hidden_size, (grid, grid)).float().unsqueeze(0)  # (1, T, D)


# ---------------------------------------------------------------------------------- weights
def official_to_diffusers(sd: StateDict) -> StateDict:
    """Official/ours adaLN-Zero state dict → ``DiTTransformer2DModel`` state dict (no copies shared).

    The fixed ``pos_embed`` is not carried (diffusers recomputes it): it must equal the sin-cos
    table for the model's grid, otherwise a ``UserError`` says the weights cannot travel.
    """
    if "y_embedder.embedding_table.weight" not in sd:
        raise UserError(
            "diffusers' DiT is class-conditional only; an unconditional model cannot be exported to diffusers"
        )
    if any(".cross_attn." in k or ".norm1.weight" in k for k in sd) or "blocks.0.adaLN_modulation.1.weight" not in sd:
        raise UserError(
            "only the adaLN-Zero design (the paper's DiT) maps to diffusers; this model uses another block design"
        )
    pe = sd["pos_embed"]  # (1, T, D)
    grid = math.isqrt(pe.shape[1])
    if grid * grid != pe.shape[1]:
        raise UserError("diffusers' DiT handles square inputs only; this model has a rectangular token grid")
    if not torch.allclose(pe.float(), _pos_embed(pe.shape[2], grid).to(pe.dtype).float(), atol=1e-6, rtol=0):
        raise UserError(
            "pos_embed is not the fixed sin-cos table; diffusers recomputes it, so these weights cannot be exported"
        )

    out: StateDict = {
        "pos_embed.proj.weight": sd["x_embedder.proj.weight"],
        "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
        "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
        "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
        "proj_out_2.weight": sd["final_layer.linear.weight"],
        "proj_out_2.bias": sd["final_layer.linear.bias"],
    }
    embed = {
        "norm1.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "norm1.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
    }
    for i in range(_depth(sd, _BLOCK)):
        b, d = f"blocks.{i}.", f"transformer_blocks.{i}."
        for dk, ok in embed.items():
            for suffix in ("weight", "bias"):
                out[f"{d}{dk}.{suffix}"] = sd[f"{ok}.{suffix}"].clone()  # each block owns a copy
        out[f"{d}norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"].clone()
        for suffix in ("weight", "bias"):
            out[f"{d}norm1.linear.{suffix}"] = sd[f"{b}adaLN_modulation.1.{suffix}"]
            q, k, v = sd[f"{b}attn.qkv.{suffix}"].chunk(3, dim=0)  # 3 × (D, D) or (D,)
            out[f"{d}attn1.to_q.{suffix}"] = q.contiguous()
            out[f"{d}attn1.to_k.{suffix}"] = k.contiguous()
            out[f"{d}attn1.to_v.{suffix}"] = v.contiguous()
            out[f"{d}attn1.to_out.0.{suffix}"] = sd[f"{b}attn.proj.{suffix}"]
            out[f"{d}ff.net.0.proj.{suffix}"] = sd[f"{b}mlp.fc1.{suffix}"]
            out[f"{d}ff.net.2.{suffix}"] = sd[f"{b}mlp.fc2.{suffix}"]
    return out


def diffusers_to_official(sd: StateDict, sample_size: Optional[int] = None) -> StateDict:
    """``DiTTransformer2DModel`` state dict → official/ours keys, with the fixed ``pos_embed`` rebuilt.

    ``sample_size`` is the latent side (diffusers' config); without it the grid is taken as
    square from nothing — so it is required to rebuild ``pos_embed``. Raises ``UserError`` when
    the per-block embedder copies differ (then no official DiT has these weights).
    """
    depth = _depth(sd, _DBLOCK)
    if depth == 0 or "pos_embed.proj.weight" not in sd:
        raise UserError(
            "not a DiTTransformer2DModel state dict (no transformer_blocks / pos_embed.proj); "
            "pass a diffusers DiT folder"
        )
    if sample_size is None:
        raise UserError("the diffusers config has no sample_size; pass --image-size")
    w = sd["pos_embed.proj.weight"]  # (D, C, p, p)
    hidden, patch = w.shape[0], w.shape[2]
    emb = {
        "t_embedder.mlp.0": "norm1.emb.timestep_embedder.linear_1",
        "t_embedder.mlp.2": "norm1.emb.timestep_embedder.linear_2",
    }
    out: StateDict = {
        "x_embedder.proj.weight": w,
        "x_embedder.proj.bias": sd["pos_embed.proj.bias"],
        "pos_embed": _pos_embed(hidden, sample_size // patch).to(w.dtype),  # stored in the weights' dtype
        "y_embedder.embedding_table.weight": sd["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"],
    }
    for ok, dk in emb.items():
        for suffix in ("weight", "bias"):
            out[f"{ok}.{suffix}"] = sd[f"transformer_blocks.0.{dk}.{suffix}"]
    shared = [f"{dk}.{s}" for dk in emb.values() for s in ("weight", "bias")] + [
        "norm1.emb.class_embedder.embedding_table.weight"
    ]
    for i in range(depth):
        b, d = f"blocks.{i}.", f"transformer_blocks.{i}."
        for key in shared:
            if not torch.equal(sd[d + key], sd["transformer_blocks.0." + key]):
                raise UserError(
                    f"block {i} of the diffusers model has its own {key.split('.')[2]} weights; the official "
                    f"DiT shares one "
                    "embedder across blocks, so this model cannot be converted"
                )
        for suffix in ("weight", "bias"):
            out[f"{b}adaLN_modulation.1.{suffix}"] = sd[f"{d}norm1.linear.{suffix}"]
            qkv = [sd[f"{d}attn1.to_{n}.{suffix}"] for n in "qkv"]
            out[f"{b}attn.qkv.{suffix}"] = torch.cat(qkv, dim=0)  # (3D, D) or (3D,)
            out[f"{b}attn.proj.{suffix}"] = sd[f"{d}attn1.to_out.0.{suffix}"]
            out[f"{b}mlp.fc1.{suffix}"] = sd[f"{d}ff.net.0.proj.{suffix}"]
            out[f"{b}mlp.fc2.{suffix}"] = sd[f"{d}ff.net.2.{suffix}"]
    out["final_layer.adaLN_modulation.1.weight"] = sd["proj_out_1.weight"]
    out["final_layer.adaLN_modulation.1.bias"] = sd["proj_out_1.bias"]
    out["final_layer.linear.weight"] = sd["proj_out_2.weight"]
    out["final_layer.linear.bias"] = sd["proj_out_2.bias"]
    return out


# ---------------------------------------------------------------------------------- configs
def official_name(depth: int, hidden_size: int, num_heads: int, patch_size: int) -> Optional[str]:
    """The official name (``DiT-S/4``…) of an architecture, or None for a custom size."""
    for name in model_names():
        if size_of(name) == dict(depth=depth, hidden_size=hidden_size, num_heads=num_heads, patch_size=patch_size):
            return name
    return None


def heads_for(depth: int, hidden_size: int) -> Optional[int]:
    """Head count of the official size with this depth and width (shapes do not store it)."""
    for d, h, heads in SIZES.values():
        if (d, h) == (depth, hidden_size):
            return heads
    return None


def config_to_diffusers(cfg: ModelConfig) -> dict:
    """A resolved :class:`ModelConfig` → ``DiTTransformer2DModel`` config (``norm_eps`` official 1e-6)."""
    if cfg.block != "adaln-zero":
        raise UserError(f"only the adaLN-Zero design maps to diffusers; this model uses {cfg.block!r}")
    if not isinstance(cfg.input_size, int) and cfg.input_size[0] != cfg.input_size[1]:
        raise UserError(f"diffusers' DiT handles square inputs only; this model's input is {cfg.input_size}")
    if cfg.num_classes <= 0:
        raise UserError(
            "diffusers' DiT is class-conditional only; an unconditional model cannot be exported to diffusers"
        )
    if cfg.class_dropout_prob <= 0:
        raise UserError("diffusers' DiT needs a null class (class_dropout_prob > 0); this model was built without one")
    side = cfg.input_size if isinstance(cfg.input_size, int) else cfg.input_size[0]
    sizes = cfg.sizes()
    return {
        "num_attention_heads": sizes.num_heads,
        "attention_head_dim": sizes.hidden_size // sizes.num_heads,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.in_channels * (2 if cfg.learn_sigma else 1),
        "num_layers": sizes.depth,
        "sample_size": int(side),
        "patch_size": sizes.patch_size,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": cfg.num_classes,
        "norm_type": "ada_norm_zero",
        "norm_elementwise_affine": False,
        "norm_eps": OFFICIAL_LN_EPS,
        "attention_bias": True,
        "dropout": 0.0,
    }


def config_from_diffusers(dcfg: dict) -> ModelConfig:
    """A ``DiTTransformer2DModel`` config dict → our :class:`ModelConfig` (official name when it fits)."""
    try:
        heads, head_dim = int(dcfg.get("num_attention_heads", 16)), int(dcfg.get("attention_head_dim", 72))
        in_ch = int(dcfg.get("in_channels", 4))
        out_ch = dcfg.get("out_channels") or in_ch
        depth, patch = int(dcfg.get("num_layers", 28)), int(dcfg.get("patch_size", 2))
        side, num_classes = int(dcfg.get("sample_size", 32)), int(dcfg.get("num_embeds_ada_norm", 1000))
    except (TypeError, ValueError) as e:
        raise UserError(f"the diffusers config has a non-numeric size field ({e}); check its config.json") from None
    if dcfg.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        raise UserError(
            f"diffusers norm_type {dcfg.get('norm_type')!r} is not DiT's ada_norm_zero; not a DiT transformer"
        )
    if out_ch not in (in_ch, 2 * in_ch):
        raise UserError(f"out_channels {out_ch} is neither in_channels {in_ch} nor twice it; not a DiT")
    hidden = heads * head_dim
    name = official_name(depth, hidden, heads, patch)
    cfg = ModelConfig(
        name=name,
        input_size=side,
        in_channels=in_ch,
        num_classes=num_classes,
        learn_sigma=out_ch == 2 * in_ch,
        class_dropout_prob=0.1,
    )
    if name is None:
        cfg = dataclasses.replace(cfg, patch_size=patch, hidden_size=hidden, depth=depth, num_heads=heads)
    return cfg


def scheduler_config(kind: str = "ddim", learn_sigma: bool = True) -> tuple[str, dict]:
    """(diffusers class name, config) of a scheduler on the DiT schedule (linear 1e-4..0.02, 1000 steps).

    ``ddpm`` uses ``variance_type="learned_range"`` when the model learns Σ (the paper's
    interpolation of β_t and β̃_t), ``fixed_small`` otherwise; ``ddim`` is deterministic (η=0).
    Neither clips x_0 (DiT samples latents, which are not in [-1, 1]).
    """
    common = dict(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        clip_sample=False,
        prediction_type="epsilon",
    )
    if kind == "ddpm":
        return "DDPMScheduler", dict(common, variance_type="learned_range" if learn_sigma else "fixed_small")
    if kind == "ddim":
        return "DDIMScheduler", dict(common, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    raise UserError(f"unknown scheduler {kind!r}; choose ddim or ddpm")


# ---------------------------------------------------------------------------------- live modules
def make_diffusers_official(transformer) -> int:
    """Patch a loaded ``DiTTransformer2DModel`` to the official constants; returns how many modules changed.

    Sets every timestep projection's ``downscale_freq_shift`` to 0 (frequencies i/128, not i/127)
    and every LayerNorm's eps to 1e-6. With both, it computes the official DiT function.
    """
    changed = 0
    for module in transformer.modules():
        if hasattr(module, "downscale_freq_shift") and hasattr(module, "flip_sin_to_cos"):
            module.downscale_freq_shift = 0
            changed += 1
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = OFFICIAL_LN_EPS
            changed += 1
    return changed
