"""`dit train` and `dit sample` take each default (and fixed choice set) from the config dataclass,
so a setting is defined once: a flag whose default or choices drift from its field fails here."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from dit.cli.main import build_parser
from dit.config import (
    ClassifierTrainConfig,
    DiffusionConfig,
    EvalConfig,
    ModelConfig,
    GenerationRequest,
    SampleConfig,
    TrainConfig,
    TrainSamplingConfig,
)

REQUIRED = {
    "sample": ["--ckpt", "c.pt"],
    "train": ["--data-path", "d", "--results-dir", "r"],
    "eval": ["s.npz", "r.npz"],
    "train-classifier": ["--data-path", "d", "--out", "c.safetensors"],
}
GIVEN = {"ckpt", "data_path", "results_dir", "samples", "reference", "out"}  # the required arguments above
CONFIGS = {
    "sample": (SampleConfig, GenerationRequest),
    "train": (TrainConfig, ModelConfig, TrainSamplingConfig, DiffusionConfig),
    "eval": (EvalConfig,),
    "train-classifier": (ClassifierTrainConfig,),
}
MIN_CHECKED = {"sample": 9, "train": 20, "eval": 4, "train-classifier": 6}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _fields(command: str) -> dict[str, tuple[type, dataclasses.Field]]:
    out: dict[str, tuple[type, dataclasses.Field]] = {}
    for cls in CONFIGS[command]:
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, (cls, f))
    return out


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_defaults_are_the_dataclass_defaults(command):
    args = vars(build_parser().parse_args([command, *REQUIRED[command]]))
    fields = _fields(command)
    checked = 0
    for dest, value in args.items():
        if dest not in fields or dest in GIVEN or value is None:  # None: resolved later (recipe, checkpoint, machine)
            continue
        cls, _ = fields[dest]
        want = getattr(cls(), dest)
        flag = "--" + dest.replace("_", "-")
        assert value == want, f"dit {command} {flag}: flag default {value!r}, {cls.__name__} {want!r}"
        checked += 1
    assert checked >= MIN_CHECKED[command]  # the mapping really covers the flags


@pytest.mark.parametrize("command", ["sample", "train"])
def test_choices_are_the_literal_types(command):
    fields = _fields(command)
    checked = 0
    for action in _subparser(command)._actions:
        if action.choices is None or action.dest not in fields:
            continue
        cls, _ = fields[action.dest]
        hint = typing.get_type_hints(cls)[action.dest]
        if typing.get_origin(hint) is typing.Union:  # Optional[Literal[...]]
            hint = typing.get_args(hint)[0]
        if typing.get_origin(hint) is typing.Literal:
            assert list(action.choices) == list(typing.get_args(hint)), (command, action.dest)
            checked += 1
    assert checked >= (9 if command == "train" else 3)
