"""Every command's --help as a new user reads it: each default printed once, never `(default: None)`,
no default on switches, and choices listed where a flag has a fixed set."""

from __future__ import annotations

import argparse
import re

import pytest

from dit.cli.main import SUBCOMMANDS, build_parser


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


PARSERS = subparsers()


def rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The lines --help prints for one flag, whitespace collapsed (wrapping must not hide a double)."""
    formatter = parser._get_formatter()
    return " ".join(formatter._format_action(action).split())


def test_every_command_is_covered():
    assert sorted(PARSERS) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_defaults_printed_once_and_only_when_meaningful(name):
    parser = PARSERS[name]
    for action in parser._actions:
        text = rendered(parser, action)
        flag = action.option_strings[0] if action.option_strings else action.dest
        assert len(re.findall(r"\(default", text, re.I)) <= 1, f"{name} {flag}: {text}"
        assert "(default: None)" not in text, f"{name} {flag}: {text}"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            assert "(default: True)" not in text and "(default: False)" not in text, f"{name} {flag}: {text}"
    assert "(default: None)" not in " ".join(parser.format_help().split())


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_runs(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([name, "--help"])
    assert exit_.value.code == 0 and "usage: dit " + name in capsys.readouterr().out


def test_num_workers_default_follows_the_machine(monkeypatch):
    import os

    from dit.config import TrainConfig, default_num_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_num_workers() == 2 and TrainConfig().num_workers == 2  # not 4 on a 2-core machine
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert default_num_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_num_workers() == 2  # 16 cores shared by 8 ranks
    args = build_parser().parse_args(["train", "--data-path", "d", "--results-dir", "r"])
    assert args.num_workers is None  # resolved to default_num_workers() when the config is built


def test_sampler_choices_are_the_registry():
    from dit.config import SAMPLER_NAMES
    from dit.diffusion.registry import SAMPLERS

    assert list(SAMPLER_NAMES) == list(SAMPLERS)  # the torch-free copy, in registry order
    for name in ("sample", "demo"):
        (action,) = [a for a in PARSERS[name]._actions if a.dest == "sampler"]
        assert list(action.choices) == list(SAMPLER_NAMES)
        assert "{" + ",".join(SAMPLER_NAMES) + "}" in PARSERS[name].format_help()


# One name per concept; the official scripts' names parse to the same setting as ours.
ALIASES = {
    "sample": {
        "num_sampling_steps": (["--num-sampling-steps"], "7", 7),
        "seed": (["--seed", "--global-seed"], "5", 5),
        "batch_size": (["--batch-size", "--per-proc-batch-size"], "3", 3),
        "num_samples": (["--num-samples", "--num-fid-samples"], "9", 9),
        "out": (["--out", "--sample-dir"], "samples/", "samples/"),
    },
    "train": {
        "sample_steps": (["--num-sampling-steps"], "7", 7),
        "seed": (["--seed", "--global-seed"], "5", 5),
    },
    "demo": {"sampling_steps": (["--num-sampling-steps"], "7", 7)},
}
REQUIRED = {"sample": ["--ckpt", "c.pt"], "train": ["--data-path", "d", "--results-dir", "r"], "demo": []}


@pytest.mark.parametrize("command", sorted(ALIASES))
def test_aliases_set_the_same_field(command):
    for dest, (flags, text, value) in ALIASES[command].items():
        for flag in flags:
            args = build_parser().parse_args([command, *REQUIRED[command], flag, text])
            assert getattr(args, dest) == value, (command, flag)


def test_sample_dir_is_a_folder_and_tf32_is_a_pair():
    parse = build_parser().parse_args
    assert parse(["sample", "--ckpt", "c", "--sample-dir", "samples"]).out == "samples/"
    for command, extra in (("sample", ["--ckpt", "c"]), ("train", REQUIRED["train"])):
        assert parse([command, *extra]).tf32 is True
        assert parse([command, *extra, "--no-tf32"]).tf32 is False and parse([command, *extra, "--tf32"]).tf32 is True
