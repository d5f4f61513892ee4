"""`dit demo` as a preset.

Its commands parse with the real sub-commands, every setting is a flag, bad input fails early.
"""

from __future__ import annotations

import dataclasses
import shlex

import numpy as np
import pytest

from dit.cli.main import build_parser, main
from dit.cli.train import build_configs
from dit.config import DemoConfig
from dit.demo.pipeline import check_config, frame_indices, stage_commands
from dit.errors import UserError
from dit.study.setup import balanced_subset


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_every_stage_command_parses_and_carries_the_settings(parser):
    cfg = DemoConfig(
        out="/tmp/x",
        depth=3,
        hidden_size=48,
        num_heads=3,
        patch_size=4,
        max_steps=77,
        lr=3e-4,
        precision="bf16",
        cfg_scale=2.5,
        sampling_steps=9,
        num_samples=300,
        device="cpu",
        recipe="paper",
    )
    cmds = stage_commands(cfg, checkpoint="/tmp/x/train/checkpoints/0000077.pt")
    assert list(cmds) == ["train-classifier", "train", "sample", "eval-samples", "eval-real"]
    parsed = {name: parser.parse_args(argv) for name, argv in cmds.items()}  # argparse exits on an unknown flag
    t = parsed["train"]
    assert (t.depth, t.hidden_size, t.num_heads, t.patch_size) == (3, 48, 3, 4)
    assert (t.max_steps, t.lr, t.precision, t.vae, t.flip, t.ema_warmup) == (77, 3e-4, "bf16", "none", False, True)
    _, model_cfg, diffusion_cfg = build_configs(t)  # --learn-sigma's default follows the objective
    assert model_cfg.learn_sigma and diffusion_cfg.objective == "gaussian"  # the paper's model and loss
    assert t.block == "adaln-zero" and t.class_dropout_prob == 0.1
    assert t.data_path == "/tmp/x/data/train" and t.device == "cpu"
    s = parsed["sample"]
    assert (s.cfg_scale, s.num_sampling_steps, s.num_samples, s.sampler) == (2.5, 9, 300, "dpm++2m")
    assert s.ckpt.endswith("0000077.pt") and s.out == "/tmp/x/samples.npz"
    c = parsed["train-classifier"]
    assert c.data_path == "/tmp/x/data/test" and c.epochs == cfg.classifier_epochs  # trained on the held-out split
    for name in ("eval-samples", "eval-real"):
        e = parsed[name]
        assert e.reference == "/tmp/x/data/test" and e.features == "classifier:/tmp/x/classifier.safetensors"


def test_the_fast_recipe_trains_a_flow_model_with_its_own_ema_and_samples_with_heun(parser):
    cfg = DemoConfig(out="/tmp/x")
    assert cfg.recipe == "fast"
    cmds = stage_commands(cfg, checkpoint="/tmp/x/train/checkpoints/0000001.pt")
    t = parser.parse_args(cmds["train"])
    train_cfg, model_cfg, diffusion_cfg = build_configs(t)
    assert diffusion_cfg.objective == "flow" and not model_cfg.learn_sigma and train_cfg.ema_type == "halflife"
    assert train_cfg.lr == cfg.lr and not t.ema_warmup  # the demo's lr; the recipe's EMA, not the paper's
    assert parser.parse_args(cmds["sample"]).sampler == "heun-x0"
    assert parser.parse_args(stage_commands(DemoConfig(out="/tmp/x", sampler="euler"))["sample"]).sampler == "euler"


def test_every_demo_setting_is_a_flag_with_the_config_default(parser):
    args = parser.parse_args(["demo"])
    for f in dataclasses.fields(DemoConfig):
        assert hasattr(args, f.name), f"DemoConfig.{f.name} has no --{f.name.replace('_', '-')} flag"
        assert getattr(args, f.name) == f.default, f.name
    overridden = parser.parse_args(
        [
            "demo",
            "--max-steps",
            "5",
            "--image-size",
            "8",
            "--precision",
            "bf16",
            "--out",
            "o",
            "--max-minutes",
            "1",
            "--depth",
            "1",
        ]
    )
    assert (
        overridden.max_steps,
        overridden.image_size,
        overridden.precision,
        overridden.out,
        overridden.max_minutes,
        overridden.depth,
    ) == (5, 8, "bf16", "o", 1.0, 1)


def test_dry_run_checks_the_settings(capsys):
    assert main(["demo", "--dry-run", "--image-size", "9"]) == 2
    assert "multiple of --patch-size" in capsys.readouterr().err


def test_dry_run_prints_the_commands(capsys):
    assert main(["demo", "--dry-run", "--out", "somewhere", "--max-steps", "12"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("dit ") for line in lines)
    train = shlex.split(lines[1])
    assert train[1] == "train" and train[train.index("--max-steps") + 1] == "12"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image_size=15), "multiple of --patch-size"),
        (dict(hidden_size=30, num_heads=4), "hidden size 30 is not divisible by 4 heads"),
        (dict(strip_class=10), "strip-class"),
        (dict(num_samples=50, grid_per_class=10), "fewer than the grid"),
        (dict(strip_frames=1), "strip-frames"),
        (dict(held_out_fraction=1.0), "held-out-fraction"),
    ],
)
def test_bad_settings_fail_before_any_work(change, message):
    with pytest.raises(UserError, match=message):
        check_config(dataclasses.replace(DemoConfig(), **change))


def test_an_existing_run_folder_is_refused_without_resume(tmp_path, capsys):
    (tmp_path / "something").write_text("x")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--resume" in err and len(err.splitlines()) == 1


def test_balanced_subset():
    labels = np.repeat(np.arange(10), [30, 5, 30, 30, 30, 30, 30, 30, 30, 30])
    idx = balanced_subset(labels, 100, seed=0)
    assert len(idx) == len(set(idx.tolist())) == 100
    counts = np.bincount(labels[idx], minlength=10)
    assert counts[1] == 5 and counts.max() - np.delete(counts, 1).min() <= 1  # the short class gives all it has
    np.testing.assert_array_equal(idx, balanced_subset(labels, 100, seed=0))
    assert (labels[idx[:20]] == np.arange(20) % 10).all()  # classes in turn, like balanced samples
    assert len(balanced_subset(labels, 10_000, seed=0)) == len(labels)


def test_frame_indices():
    assert frame_indices(21, 11) == list(range(0, 21, 2))
    assert frame_indices(4, 11) == [0, 1, 2, 3]
    ks = frame_indices(251, 7)
    assert ks[0] == 0 and ks[-1] == 250 and len(ks) == 7
