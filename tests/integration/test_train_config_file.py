"""A run folder's config.toml repeats the run bit for bit (paper recipe, fp32), and a --config file plus
flags resolve to what --print-config prints."""

from __future__ import annotations

import pytest
import torch

from dit.cli.main import main
from dit.config.files import load_toml

from tests.helpers.train import final_state, train_args

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_folder_config_repeats_the_run_bit_for_bit(data, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    argv = train_args(data, first, "--max-steps", "3", "--precision", "fp32", "--ckpt-every", "100")
    assert main(argv) == 0
    saved = first / "config.toml"
    settings = load_toml(saved)
    assert settings["train"]["recipe"] == "paper" and settings["train"]["max_steps"] == 3
    assert settings["model"]["depth"] == 2 and settings["train"]["seed"] == 7  # the flags are recorded
    assert "num_classes" not in settings["model"]  # read from the data, so not recorded as a setting
    # nothing but the config file and a new folder
    assert main(["train", "--config", str(saved), "--results-dir", str(again)]) == 0
    a, b = final_state(first), final_state(again)
    assert a["step"] == b["step"] == 3
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    assert load_toml(again / "config.toml") == {**settings, "train": {**settings["train"], "results_dir": str(again)}}


def test_config_flags_and_print_config_round_trip(data, tmp_path, capsys):
    """print → run with that file → the same resolved config (and flags still override the file)."""
    argv = train_args(data, tmp_path / "r", "--max-steps", "5", "--recipe", "fast", "--ema-type", "power")
    assert main([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "run.toml"
    path.write_text(printed)
    assert main(["train", "--config", str(path), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert main(["train", "--config", str(path), "--lr", "0.01", "--print-config"]) == 0
    changed = capsys.readouterr().out
    assert "lr = 0.01\n" in changed and changed.replace("lr = 0.01\n", "lr = 0.001\n") == printed
    assert not (tmp_path / "r").exists()  # --print-config trains nothing
