"""Training recipes: named sets of overrides of the train, model and diffusion configs."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, get_args

from dit.errors import UserError

if TYPE_CHECKING:
    from dit.config.diffusion import DiffusionConfig
    from dit.config.model import ModelConfig
    from dit.config.train import TrainConfig

# Training recipes (RECIPES below holds each one's values); the first is the paper's
RecipeName = Literal["paper", "fast"]
RECIPE_NAMES: tuple[str, ...] = get_args(RecipeName)

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # The paper's recipe: every dataclass default (ε + learned Σ, uniform t, lr 1e-4, EMA 0.9999).
    "paper": {},
    # For short runs (minutes to hours): flow matching with velocity prediction (SiT) and
    # logit-normal(0.5, 1) timesteps (SD3's law, shifted toward noise where the class and layout are
    # decided), the network predicting the clean image (JiT's x-prediction, loss on the velocity),
    # a higher lr with a short warm-up, gradient clipping,
    # AdamW β2 0.99 (adapts faster), and EDM's half-life EMA (half-life min(500k, 0.05 × images
    # seen)), so that a run of a few hundred steps averages its recent weights, not its initial ones.
    "fast": {
        "diffusion": {
            "objective": "flow",
            "learn_sigma": False,
            "timestep_sampling": "logit-normal",
            "logit_normal_mean": 0.5,
            "logit_normal_std": 1.0,
            "prediction_type": "xstart",
        },
        "model": {"learn_sigma": False},
        "train": {"lr": 5e-4, "warmup_steps": 100, "grad_clip": 1.0, "betas": (0.9, 0.99), "ema_type": "halflife"},
    },
}
"""Recipe name → {config section → field overrides}; each field is also a `dit train` flag of its own."""


def apply_recipe(name: RecipeName, train: "TrainConfig", model: "ModelConfig", diffusion: "DiffusionConfig"):
    """(train, model, diffusion) with recipe ``name``'s values; ``train.recipe`` records the name."""
    if name not in RECIPES:
        raise UserError(f"--recipe {name!r} is unknown; choose one of {list(RECIPE_NAMES)}")
    r = RECIPES[name]
    return (
        dataclasses.replace(train, recipe=name, **r.get("train", {})),
        dataclasses.replace(model, **r.get("model", {})),
        dataclasses.replace(diffusion, **r.get("diffusion", {})),
    )
