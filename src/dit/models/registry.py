"""The one table of named DiT sizes (paper Table 1) and the constructors built from it.

``DiT_models["DiT-XL/2"](input_size=32, num_classes=1000, ...)`` matches the official registry;
:func:`build_model` turns a :class:`dit.config.ModelConfig` into a model and :func:`model_names`
gives the CLI its choices. Tests parametrised over ``model_names()`` cover a new size for free.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List

from dit.config import ModelConfig
from dit.errors import UserError
from dit.models.dit import DiT

# size → (depth, hidden_size, num_heads); paper Table 1. Patch sizes 2, 4, 8 for every size.
SIZES: Dict[str, tuple] = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
}
PATCH_SIZES = (2, 4, 8)


def model_names() -> List[str]:
    """The 12 official names, largest first: DiT-XL/2, DiT-XL/4, …, DiT-S/8."""
    return [f"DiT-{size}/{p}" for size in SIZES for p in PATCH_SIZES]


def size_of(name: str) -> dict:
    """Architecture keywords (depth, hidden_size, num_heads, patch_size) of an official name."""
    try:
        size, patch = name[len("DiT-") :].split("/")
        depth, hidden, heads = SIZES[size]
        patch_size = int(patch)
        if not name.startswith("DiT-") or patch_size not in PATCH_SIZES:
            raise KeyError(name)
    except (KeyError, ValueError):
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(model_names())}") from None
    return dict(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch_size)


def _constructor(name: str) -> Callable[..., DiT]:
    def make(**kwargs) -> DiT:
        model = DiT(**size_of(name), **kwargs)
        model.config.name = name
        return model

    make.__name__ = name.replace("-", "_").replace("/", "_")
    make.__doc__ = f"{name}: DiT with the sizes of the paper's Table 1; keyword arguments go to DiT."
    return make


DiT_models: Dict[str, Callable[..., DiT]] = {name: _constructor(name) for name in model_names()}


def resolve(cfg: ModelConfig) -> ModelConfig:
    """A copy of ``cfg`` with the size fields filled from the registry (named) or checked (custom).

    Explicit size fields that disagree with the named size raise :class:`UserError`.
    """
    if cfg.name is None:
        missing = [f for f in ("patch_size", "hidden_size", "depth", "num_heads") if getattr(cfg, f) is None]
        if missing:
            raise UserError(f"a custom model (name=None) needs {', '.join(missing)}; or give an official name")
        return dataclasses.replace(cfg)
    sizes = size_of(cfg.name)
    clash = {k: getattr(cfg, k) for k, v in sizes.items() if getattr(cfg, k) not in (None, v)}
    if clash:
        raise UserError(f"{cfg.name} fixes {sizes}, but the config sets {clash}; drop those fields or use name=None")
    return dataclasses.replace(cfg, **sizes)


def build_model(cfg: ModelConfig) -> DiT:
    """Build the DiT a config describes; ``model.config`` equals the resolved config."""
    r = resolve(cfg)
    sizes = r.sizes()
    input_size = r.input_size if isinstance(r.input_size, int) else tuple(r.input_size)
    model = DiT(
        input_size=input_size,
        patch_size=sizes.patch_size,
        in_channels=r.in_channels,
        hidden_size=sizes.hidden_size,
        depth=sizes.depth,
        num_heads=sizes.num_heads,
        mlp_ratio=r.mlp_ratio,
        class_dropout_prob=r.class_dropout_prob,
        num_classes=r.num_classes,
        learn_sigma=r.learn_sigma,
        block=r.block,
        norm=r.norm,
        qk_norm=r.qk_norm,
        mlp=r.mlp,
        rope=r.rope,
        long_skip=r.long_skip,
        interval_embedding=r.interval_embedding,
    )
    model.config.name = r.name
    return model
