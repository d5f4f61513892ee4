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
