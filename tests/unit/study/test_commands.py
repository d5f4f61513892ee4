"""The study's command lines: spelled from setting names, parsed by the real sub-commands, and the
very lines `dit demo` runs (the demo is a one-run study)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dit.cli.main import build_parser
from dit.config import DemoConfig
from dit.demo.pipeline import demo_study, stage_commands
from dit.config import ClassifierTrainConfig
from dit.config.fields import flag_of, setting
from dit.study.commands import SAMPLE, TRAIN, classifier_argv, fill, flag, flags, sample_argv, train_argv
from dit.study.grid import expand
from dit.study.runner import plan_of
from dit.study.setup import planned_setup, setup_commands
from dit.study.spec import StudySpec


def test_flags_spell_settings_with_their_fields_flags():
    assert flags(TRAIN, global_batch_size=8, vae=None, flip=False, ema_warmup=True, lr=0.5) == [
        "--global-batch-size", "8", "--no-flip", "--ema-warmup", "--lr", "0.5",
    ]  # fmt: skip


def test_a_field_with_its_own_flag_is_spelled_so():
    @dataclasses.dataclass
    class C:
        steps: int = setting(1, help="h", flag="--num-steps")

    assert flag((C,), "steps") == "--num-steps" and flags((C,), steps=3, other=None) == ["--num-steps", "3"]


SPEC = StudySpec(steps=1, max_minutes=1.0, precision="fp32", device="cpu")
(RUN,) = expand(SPEC)


@pytest.mark.parametrize(
    "configs, argv",
    [
        (TRAIN, train_argv(SPEC, RUN, Path("r"), "d") + flags(TRAIN, ema_decay=0.9, ema_warmup=True)),
        (SAMPLE, sample_argv(SPEC, RUN)),
        ((ClassifierTrainConfig,), classifier_argv(SPEC, "t", "c.safetensors")),
    ],
    ids=["train", "sample", "train-classifier"],
)
def test_every_flag_is_a_config_fields_own(configs, argv):
    """No flag is spelled by the ``--name`` fallback: a renamed setting would break the command lines."""
    names = {flag_of(f) for cls in configs for f in dataclasses.fields(cls)}
    names |= {"--no-" + n.removeprefix("--") for n in names}
    assert [a for a in argv[1:] if a.startswith("--") and a not in names] == []


def test_a_study_plan_parses_with_the_real_commands(tmp_path):
    parser = build_parser()
    spec = StudySpec(steps=10, precision="fp32", max_minutes=2.0, log_every=3, seeds=[4], device="cpu")
    (run,) = expand(spec)
    plan = plan_of(spec, run, tmp_path / "r", planned_setup(spec, tmp_path))
    t = parser.parse_args(plan["train"])
    assert (t.max_steps, t.max_minutes, t.log_every, t.precision, t.seed, t.flip) == (10, 2.0, 3, "fp32", 4, False)
    assert t.results_dir == str(tmp_path / "r" / "train") and t.data_path == str(tmp_path / "data" / "train")
    s = parser.parse_args(fill(plan["sample"], ckpt="c.pt", samples="s.npz"))
    assert (s.ckpt, s.out, s.seed, s.sampler, s.precision) == ("c.pt", "s.npz", spec.eval_seed, "heun-x0", "fp32")
    for argv in setup_commands(spec, tmp_path).values():
        parser.parse_args(argv)


@pytest.mark.parametrize("recipe", ["fast", "paper"])
def test_the_demo_runs_the_study_command_lines(recipe, tmp_path):
    cfg = DemoConfig(out=str(tmp_path), recipe=recipe, seed=3, max_minutes=None)
    spec, run = demo_study(cfg)
    assert (run.max_steps, run.ckpt_every, run.seed, spec.eval_seed) == (cfg.max_steps, cfg.max_steps, 3, 3)
    plan = plan_of(spec, run, Path(cfg.out), planned_setup(spec, Path(cfg.out)))
    cmds = stage_commands(cfg, checkpoint="c.pt")
    assert (
        cmds["train"] == plan["train"]
        and cmds["train-classifier"] == setup_commands(spec, tmp_path)["train-classifier"]
    )
    assert cmds["sample"] == fill(plan["sample"], ckpt="c.pt", samples=str(tmp_path / "samples.npz"))
