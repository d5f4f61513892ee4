"""`dit train`: settings (flags generated from the configs, --config, --recipe) → dit.train.trainer.train."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from dit.cli.flags import add_fields, given
from dit.cli.run_config import Configs, add_config_flags, check_required, file_value, resolve
from dit.config import (
    RECIPES,
    DiffusionConfig,
    ModelConfig,
    TrainConfig,
    TrainSamplingConfig,
    apply_recipe,
    default_num_workers,
)

HELP = "train a DiT (one process, or one rank per GPU under torchrun)"
DESCRIPTION = (
    "Train a DiT with the paper's recipe (AdamW lr 1e-4, no weight decay, EMA 0.9999; or --recipe fast "
    "for short runs: flow matching, logit-normal timesteps, higher lr, growing EMA) on an image "
    "folder (one sub-folder per class) or a latent cache from `dit extract-latents`. Settings resolve in "
    "this order: defaults < --recipe < --config file < the flags typed. The results folder holds the resolved "
    "config.toml (`dit train --config RUN/config.toml --results-dir NEW` repeats the run), logs (metrics.csv; "
    "TensorBoard with --tensorboard), and checkpoints/<step>.pt with EMA weights beside them as .ema.safetensors. "
    "Launch on several GPUs with: torchrun --nproc_per_node 8 -m dit.cli.main train ... (multi-node: add "
    "--nnodes N --node_rank R --rdzv_endpoint HOST:PORT)."
)

# Config file tables and the configs they fill (model sizes, sampling hooks and the objective included)
SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "sampling": TrainSamplingConfig,
}
CUSTOM_SIZE = ("depth", "hidden_size", "num_heads", "patch_size")
FROM_DATA = {"model": ("input_size", "in_channels", "num_classes")}  # the trainer reads these from the data
SETTINGS_HEADER = (
    "dit train: the resolved settings (defaults < recipe < config file < flags).\n"
    "Repeat the run with: dit train --config config.toml --results-dir NEW_FOLDER"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, SECTIONS)
    for section, cls in SECTIONS.items():
        notes = _recipe_notes(section)
        if section == "train":
            notes["num_workers"] = f"here {default_num_workers()}"
        add_fields(p, cls, notes=notes)


def _recipe_notes(section: str) -> dict[str, str]:
    """``{field: "--recipe fast: VALUE"}`` for the fields a non-default recipe sets."""
    notes: dict[str, list[str]] = {}
    for name, recipe in RECIPES.items():
        for key, value in recipe.get(section, {}).items():
            notes.setdefault(key, []).append(f"--recipe {name}: {_show(value)}")
    return {k: "; ".join(v) for k, v in notes.items()}


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def build_configs(args: argparse.Namespace) -> tuple[TrainConfig, ModelConfig, DiffusionConfig]:
    """(train, model, diffusion) of :func:`resolve_configs`."""
    configs = resolve_configs(args)
    return configs["train"], configs["model"], configs["diffusion"]


def resolve_configs(args: argparse.Namespace) -> Configs:
    """``{section: config}``: the dataclass defaults, then the recipe's values, then the ``--config`` file,
    then the flags typed. Unless set, --learn-sigma follows the objective (on for gaussian, off for flow)."""
    from dit.errors import UserError

    recipe = args.recipe if "recipe" in given(args) else file_value(args, SECTIONS, "train", "recipe")
    train, model, diffusion = apply_recipe(recipe or "paper", TrainConfig(), ModelConfig(), DiffusionConfig())
    base = {"train": train, "model": model, "diffusion": diffusion, "sampling": TrainSamplingConfig()}
    configs, explicit = resolve(SECTIONS, args, base)
    if not args.print_config:
        check_required(SECTIONS, explicit)
    model, diffusion = configs["model"], configs["diffusion"]
    sizes = [getattr(model, k) for k in CUSTOM_SIZE]
    if any(v is not None for v in sizes) and not all(v is not None for v in sizes):
        raise UserError("a custom model size needs all of --depth, --hidden-size, --num-heads and --patch-size")
    if sizes[0] is not None or (configs["train"].init_from and ("model", "name") not in explicit):
        model = dataclasses.replace(model, name=None)  # custom size, or the pretrained model's own
    learn_sigma = model.learn_sigma if ("model", "learn_sigma") in explicit else diffusion.objective == "gaussian"
    configs["model"] = dataclasses.replace(model, learn_sigma=learn_sigma)
    configs["diffusion"] = dataclasses.replace(diffusion, learn_sigma=learn_sigma).validate()
    return configs


def run(args: argparse.Namespace) -> int:
    from dit.config.files import to_toml

    configs = resolve_configs(args)
    settings = to_toml(configs, header=SETTINGS_HEADER, omit=FROM_DATA)
    if args.print_config:
        print(settings, end="")
        return 0
    from dit.evaluation.hooks import training_callbacks
    from dit.sampling.defaults import SamplingDefaults
    from dit.train.trainer import train

    cfg = configs["train"]
    scfg = configs["sampling"]
    defaults = SamplingDefaults.of(configs["diffusion"], scfg.sampler, scfg.sample_steps)
    callbacks = training_callbacks(cfg, scfg)
    result = train(
        cfg, configs["model"], configs["diffusion"], callbacks=callbacks, settings=settings, sampling=defaults
    )
    if result.is_main:
        print(f"stopped at step {result.step} ({result.stop_reason}); checkpoint: {result.last_checkpoint}")
    return 0
