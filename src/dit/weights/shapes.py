"""What a DiT state dict's tensor shapes say: its size, input side and classes, a config that fits
them, and a one-line error naming the keys that do not fit a model (with the flags that would)."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Optional

import torch

from dit.config import ModelConfig
from dit.errors import UserError
from dit.weights.diffusers_keys import heads_for, official_name

StateDict = Dict[str, torch.Tensor]
LATENT_DOWNSAMPLE = 8  # SD VAE: image side / latent side; used when a model has 4 input channels


def latent_side(image_size: int, in_channels: int) -> int:
    """Model input side for an image side: /8 for 4-channel (SD-VAE latent) models, else pixels."""
    if in_channels == 4:
        if image_size % LATENT_DOWNSAMPLE:
            raise UserError(
                f"--image-size {image_size} is not a multiple of {LATENT_DOWNSAMPLE} (the VAE's downsampling)"
            )
        return image_size // LATENT_DOWNSAMPLE
    return image_size


def image_side(input_size: int, in_channels: int) -> int:
    """Inverse of :func:`latent_side`."""
    return input_size * LATENT_DOWNSAMPLE if in_channels == 4 else input_size


def shape_facts(sd: StateDict) -> Dict[str, Any]:
    """What tensor shapes say about an adaLN-Zero DiT: width, depth, patch, channels, tokens, classes."""
    try:
        w = sd["x_embedder.proj.weight"]  # (D, C, p, p)
        out = sd["final_layer.linear.weight"].shape[0]  # p*p*C_out
    except KeyError as e:
        raise UserError(f"the weights have no {e.args[0]}; they are not a DiT state dict (official keys)") from None
    hidden, in_ch, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    depth = 1 + max([int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m], default=-1)
    table = sd.get("y_embedder.embedding_table.weight")
    tokens = int(sd["pos_embed"].shape[1]) if "pos_embed" in sd else None
    return dict(
        hidden_size=hidden,
        in_channels=in_ch,
        patch_size=patch,
        depth=depth,
        tokens=tokens,
        learn_sigma=out == patch * patch * in_ch * 2,
        table_rows=int(table.shape[0]) if table is not None else 0,
    )


def infer_config(
    sd: StateDict, model: Optional[str] = None, image_size: Optional[int] = None, num_classes: Optional[int] = None
) -> ModelConfig:
    """A :class:`ModelConfig` that fits ``sd``'s shapes; explicit arguments win over the shapes.

    Heads are not visible in shapes: an official name is matched by (depth, width); a custom
    width needs ``model``. The input side comes from ``image_size`` or sqrt(tokens)·p (square).
    A class table of ``rows`` means ``rows − 1`` classes plus the null class unless
    ``num_classes == rows`` (no null class, class_dropout_prob 0).
    """
    f = shape_facts(sd)
    if model is None:
        heads = heads_for(f["depth"], f["hidden_size"])
        if heads is None:
            raise UserError(
                f"no official DiT has depth {f['depth']} and width {f['hidden_size']}; pass a checkpoint that "
                "carries its config (dit train / dit convert output) or a diffusers folder"
            )
        model = official_name(f["depth"], f["hidden_size"], heads, f["patch_size"])
        if model is None:
            raise UserError(f"no official DiT has patch size {f['patch_size']}; only 2, 4 and 8 exist")
    if image_size is not None:
        side: Any = latent_side(int(image_size), f["in_channels"])
    elif f["tokens"] is not None and math.isqrt(f["tokens"]) ** 2 == f["tokens"]:
        side = math.isqrt(f["tokens"]) * f["patch_size"]
    else:
        raise UserError("cannot tell the image size from these weights (no square pos_embed); pass --image-size")
    rows = f["table_rows"]
    if num_classes is None:
        num_classes, dropout = (max(rows - 1, 0), 0.1) if rows else (0, 0.1)
    else:
        dropout = 0.0 if (rows and num_classes == rows) else 0.1
    return ModelConfig(
        name=model,
        input_size=side,
        in_channels=f["in_channels"],
        num_classes=int(num_classes),
        learn_sigma=f["learn_sigma"],
        class_dropout_prob=dropout,
    )


def suggest_flags(sd: StateDict) -> str:
    """The ``--model --image-size --num-classes`` that fit ``sd`` (best effort, for error messages)."""
    try:
        f = shape_facts(sd)
    except UserError:
        return ""
    heads = heads_for(f["depth"], f["hidden_size"])
    name = official_name(f["depth"], f["hidden_size"], heads, f["patch_size"]) if heads else None
    custom = f"(custom size: depth {f['depth']}, width {f['hidden_size']}, patch {f['patch_size']})"
    parts = [f"--model {name}" if name else custom]
    if f["tokens"] is not None and math.isqrt(f["tokens"]) ** 2 == f["tokens"]:
        parts.append(f"--image-size {image_side(math.isqrt(f['tokens']) * f['patch_size'], f['in_channels'])}")
    if f["table_rows"]:
        parts.append(f"--num-classes {f['table_rows'] - 1}")
    return " ".join(parts)


def check_fits(expected: Dict[str, torch.Size], sd: StateDict, where: str) -> None:
    """Raise a ``UserError`` naming missing, unexpected and mis-shaped keys (and the flags that fit)."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shaped = sorted(k for k in set(expected) & set(sd) if tuple(expected[k]) != tuple(sd[k].shape))
    if not (missing or unexpected or shaped):
        return

    def few(keys, fmt=str):
        return ", ".join(fmt(k) for k in keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

    parts = []
    if missing:
        parts.append(f"missing {few(missing)}")
    if unexpected:
        parts.append(f"unexpected {few(unexpected)}")
    if shaped:
        parts.append("mis-shaped " + few(shaped, lambda k: f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k])}"))
    hint = suggest_flags(sd)
    raise UserError(f"{where} does not fit the model: {'; '.join(parts)}" + (f"; try {hint}" if hint else ""))
