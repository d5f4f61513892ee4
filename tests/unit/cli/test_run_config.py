"""`dit train --config`: precedence (defaults < recipe < file < flags), presets, and bad files as one line."""

from __future__ import annotations

import pytest

from dit.cli import train as train_cli
from dit.cli.main import build_parser, main
from dit.config import TrainConfig
from dit.config.files import PRESETS, load_toml, preset_names, read_config, to_toml

REQUIRED = ["--data-path", "d", "--results-dir", "r"]


def configs(*argv: str) -> dict:
    return train_cli.resolve_configs(build_parser().parse_args(["train", *argv]))


def write(tmp_path, text: str):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return str(path)


def test_precedence_defaults_recipe_file_flags(tmp_path):
    path = write(tmp_path, '[train]\nrecipe = "fast"\nwarmup_steps = 7\nmax_steps = 9\n[model]\nblock = "adaln"\n')
    c = configs(*REQUIRED, "--config", path)
    assert c["train"].recipe == "fast" and c["train"].lr == 5e-4  # the file's recipe gives the base
    assert c["train"].warmup_steps == 7 and c["model"].block == "adaln"  # the file beats the recipe
    assert c["diffusion"].objective == "flow" and c["model"].learn_sigma is False  # σ follows the objective
    c = configs(*REQUIRED, "--config", path, "--warmup-steps", "3", "--recipe", "paper")
    assert c["train"].warmup_steps == 3 and c["train"].recipe == "paper" and c["train"].lr == 1e-4  # flags win
    assert c["train"].max_steps == 9 and c["diffusion"].objective == "gaussian"


def test_top_level_keys_belong_to_the_one_table_that_has_them(tmp_path):
    c = configs(*REQUIRED, "--config", write(tmp_path, 'lr = 0.003\nblock = "adaln"\n'))
    assert c["train"].lr == 0.003 and c["model"].block == "adaln"


def test_required_settings_come_from_the_file_or_flags(tmp_path, capsys):
    path = write(tmp_path, '[train]\ndata_path = "d"\nresults_dir = "r"\n')
    assert configs("--config", path)["train"].data_path == "d"
    assert main(["train", "--max-steps", "1"]) == 2
    assert "required: --data-path, --results-dir" in capsys.readouterr().err


def test_small_digits_preset_is_the_readme_command():
    assert "small-digits" in preset_names() and (PRESETS / "small-digits.toml").is_file()
    c = configs(*REQUIRED, "--config", "small-digits")
    readme = configs(
        *REQUIRED,
        *("--recipe", "fast", "--lr", "2e-3", "--image-size", "32", "--vae", "none", "--no-flip"),
        *("--depth", "6", "--hidden-size", "192", "--num-heads", "3", "--patch-size", "8"),
        *("--global-batch-size", "32", "--num-workers", "0", "--max-minutes", "30"),
    )
    assert c == readme


@pytest.mark.parametrize(
    "text, words",
    [
        ("[train]\nlrr = 1\n", "unknown key 'lrr' in [train] (did you mean 'lr'?)"),
        ("[trian]\nlr = 1\n", "unknown key 'trian' (did you mean 'train'?)"),
        ("colour = 1\n", "unknown key 'colour'"),
        ('[train]\nmax_steps = "ten"\n', "[train] max_steps must be an integer, got 'ten'"),
        ("[train]\nmax_steps = 1.5\n", "[train] max_steps must be an integer"),
        ("[train]\nflip = 1\n", "[train] flip must be true or false"),
        ('[train]\nrecipe = "slow"\n', "[train] recipe must be one of paper, fast"),
        ("[train]\nbetas = [0.9]\n", "[train] betas must be a list of numbers (exactly 2)"),
        ("[train\nlr = 1\n", "not valid TOML"),
        ("lr = \n", "not valid TOML"),
        ("seed = 1\nseed = 2\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path, capsys, text, words):
    path = write(tmp_path, text)
    assert main(["train", *REQUIRED, "--config", path, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.startswith(f"error: {path}") and err.count("\n") == 1, err


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["train", *REQUIRED, "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "no such file, and no preset of that name (presets: small-digits" in err and err.count("\n") == 1


def test_writer_round_trips_every_value_kind(tmp_path):
    cfg = TrainConfig(
        data_path='we"ird\\pa\nth\tü\x7f',
        max_minutes=float("inf"),
        ema_rampup_ratio=None,  # None where the default is not: written "none"
        betas=(0.5, 1e-20),
        lr=5e-05,
        compile=False,
    )
    path = tmp_path / "c.toml"
    path.write_text(to_toml({"train": cfg}, header="two\nlines"))
    assert load_toml(path)["train"]["ema_rampup_ratio"] == "none"
    assert TrainConfig(**read_config(str(path), {"train": TrainConfig})["train"]) == cfg


def test_sample_config_round_trips_through_print_config(tmp_path, capsys):
    from dit.cli import sample as sample_cli
    from dit.config import GenerationRequest, SampleConfig

    argv = ["sample", "--ckpt", "c.pt", "--out", "s.npz", "--class-labels", "1", "2", "--guidance-interval", "0", "500"]
    assert main([*argv, "--sampler", "ddim", "--print-config"]) == 0
    printed = capsys.readouterr().out
    path = write(tmp_path, printed)
    assert main(["sample", "--config", path, "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    read = read_config(path, sample_cli.SECTIONS)
    assert SampleConfig(**read["sample"]) == SampleConfig(ckpt="c.pt", out="s.npz")
    assert GenerationRequest(**read["request"]) == GenerationRequest(
        class_labels=(1, 2), guidance_interval=(0, 500), sampler="ddim"
    )
    assert main(["sample", "--config", path, "--seed", "3", "--print-config"]) == 0
    assert "seed = 3\n" in capsys.readouterr().out
    assert main(["sample", "--out", "x.png"]) == 2
    assert "required: --ckpt" in capsys.readouterr().err
