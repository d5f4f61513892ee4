"""Every flag that sets a config field is generated from that field (dit.cli.flags), never declared twice.

Two checks: the parsers, introspected against the dataclass fields (each setting is one generated
action with the field's flag, aliases, help and choices, and no other action writes a field), and
the source of src/dit/cli, where no hand-written ``add_argument`` names a setting's flag or field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path
from typing import Literal, Optional

import pytest

from dit.cli import flags
from dit.cli import train as train_cli
from dit.config import ClassifierTrainConfig, DemoConfig, EvalConfig, GenerationRequest, SampleConfig, ServeConfig
from dit.cli.main import build_parser
from dit.config.fields import info, setting
from dit.study.spec import StudySpec

CLI = Path(flags.__file__).resolve().parent
COMMANDS: dict[str, tuple[type, ...]] = {
    "train": tuple(train_cli.SECTIONS.values()),
    "sample": (SampleConfig, GenerationRequest),
    "demo": (DemoConfig,),
    "serve": (ServeConfig,),
    "study": (StudySpec,),
    "eval": (EvalConfig,),
    "train-classifier": (ClassifierTrainConfig,),
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


PARSERS = subparsers()
GENERATED = (flags._Recording, flags._RecordingBool)


def settings_of(command: str):
    return [(cls, f, info(cls, f)) for cls in COMMANDS[command] for f in dataclasses.fields(cls) if info(cls, f).cli]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_setting_is_one_generated_flag(command):
    actions = {a.option_strings[0]: a for a in PARSERS[command]._actions if a.option_strings}
    settings = settings_of(command)
    assert len(settings) >= 5
    for cls, f, s in settings:
        action = actions[s.flag]
        assert isinstance(action, GENERATED), f"dit {command} {s.flag}: not generated from {cls.__name__}.{f.name}"
        assert action.dest == f.name
        strings = [s.flag, *s.aliases]
        if isinstance(action, argparse.BooleanOptionalAction):
            strings += ["--no-" + x[2:] for x in strings]
        assert sorted(action.option_strings) == sorted(strings)
        assert action.help.startswith(s.help)
        if s.choices is not None:
            assert tuple(action.choices) == tuple(s.choices)
    fields = {f.name for _, f, _ in settings}
    for action in PARSERS[command]._actions:
        if action.dest in fields:
            assert isinstance(action, GENERATED), f"dit {command} {action.option_strings}: a hand-written setting"


def _hand_flags(files: list[Path]) -> list[tuple[str, int, str]]:
    """(file, line, flag or dest) of every ``add_argument`` call written in ``files``."""
    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                names += [k.value.value for k in node.keywords if k.arg == "dest" and isinstance(k.value, ast.Constant)]
                out += [(path.name, node.lineno, str(n)) for n in names]
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_hand_written_add_argument_declares_a_setting(command):
    """The command's module and the shared ones (flags.py, run_config.py) name no setting in add_argument."""
    taken: dict[str, str] = {}
    for cls, f, s in settings_of(command):
        for name in (s.flag, *s.aliases, f.name):
            taken[name] = f"{cls.__name__}.{f.name}"
    module = Path(PARSERS[command].get_default("_run").__code__.co_filename)
    hand = _hand_flags([module, CLI / "flags.py", CLI / "run_config.py"])
    assert any(name == "--print-config" for _, _, name in hand)  # the scan sees the hand-written flags
    clashes = [f"{file}:{line} {name} (the setting {taken[name]})" for file, line, name in hand if name in taken]
    assert clashes == []


@dataclasses.dataclass
class Example:
    mode: Literal["a", "b"] = setting("a", help="mode")
    count: Optional[int] = setting(None, help="how many", bound=">0", aliases=("--n",))
    ratio: Optional[float] = setting(0.5, help="a ratio", bound=">0")
    pair: tuple[float, float] = setting((1.0, 2.0), help="two numbers")
    labels: Optional[tuple[int, ...]] = setting(None, help="some labels")
    on: bool = setting(True, help="a switch")
    path: str = setting("x", help="a path", required=True)
    hidden: int = setting(0, help="config files only", cli=False)


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    flags.add_fields(p, Example)
    return p.parse_args(argv)


def test_types_come_from_the_annotations():
    args = parse("--mode", "b", "--n", "3", "--ratio", "none", "--pair", "3", "4", "--labels", "1", "2", "--no-on")
    assert flags.from_args(Example, args) == Example("b", 3, None, (3.0, 4.0), (1, 2), False, "x", 0)
    assert flags.given(args) == {"mode", "count", "ratio", "pair", "labels", "on"}
    assert flags.from_args(Example, parse()) == Example() and flags.given(parse()) == set()
    base = Example(mode="b", hidden=4)
    assert flags.from_args(Example, parse("--count", "2"), base) == dataclasses.replace(base, count=2)
    for bad in (["--mode", "c"], ["--count", "0"], ["--ratio", "-1"], ["--pair", "1"], ["--hidden", "1"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parse(*bad)


# The flags of the official DiT scripts (train.py; sample.py and sample_ddp.py), which stay accepted
OFFICIAL = {
    "train": "--data-path --results-dir --model --image-size --num-classes --epochs --global-batch-size "
    "--global-seed --vae --num-workers --log-every --ckpt-every",
    "sample": "--model --vae --image-size --num-classes --cfg-scale --num-sampling-steps --seed --ckpt "
    "--sample-dir --per-proc-batch-size --num-fid-samples --global-seed --tf32 --no-tf32",
}


@pytest.mark.parametrize("command", sorted(OFFICIAL))
def test_the_official_scripts_flag_names_are_accepted(command):
    ours = {s for a in PARSERS[command]._actions for s in a.option_strings}
    assert set(OFFICIAL[command].split()) <= ours
