"""`dit train --config small-photos`: the preset is the photo command of docs/small-data.md, and differs from the
digits preset exactly where photos need it (patch 4, flips, timesteps centred at t = 0.5)."""

from __future__ import annotations

from dit.config.files import PRESETS, preset_names
from tests.unit.cli.test_run_config import REQUIRED, configs

PHOTO_COMMAND = (
    *("--recipe", "fast", "--lr", "2e-3", "--image-size", "32", "--vae", "none"),
    *("--depth", "6", "--hidden-size", "192", "--num-heads", "3", "--patch-size", "4"),
    *("--global-batch-size", "32", "--num-workers", "0", "--max-minutes", "30", "--logit-normal-mean", "0"),
)


def test_small_photos_preset_is_the_documented_command():
    assert "small-photos" in preset_names() and (PRESETS / "small-photos.toml").is_file()
    assert configs(*REQUIRED, "--config", "small-photos") == configs(*REQUIRED, *PHOTO_COMMAND)


def test_small_photos_differs_from_small_digits_in_patch_flips_and_timestep_law_only():
    photos = configs(*REQUIRED, "--config", "small-photos")
    digits = configs(*REQUIRED, "--config", "small-digits")
    assert photos["train"].flip and not digits["train"].flip
    assert (photos["model"].patch_size, digits["model"].patch_size) == (4, 8)
    assert (photos["diffusion"].logit_normal_mean, digits["diffusion"].logit_normal_mean) == (0.0, 0.5)
    photos["train"].flip = digits["train"].flip
    photos["model"].patch_size = digits["model"].patch_size
    photos["diffusion"].logit_normal_mean = digits["diffusion"].logit_normal_mean
    assert photos == digits
