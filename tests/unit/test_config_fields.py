"""dit.config.fields: a field declares its help, choices, aliases and flag once; check_choices reads them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from dit.config import DiffusionConfig, ModelConfig, SampleConfig, TrainConfig
from dit.config.fields import Setting, check_choices, info, setting
from dit.errors import UserError


@dataclass
class Example:
    mode: Literal["a", "b"] = setting("a", help="the mode")
    maybe: Optional[Literal["x", "y"]] = setting(None, help="optional choice", aliases=("--old-maybe",))
    size: int = setting(3, help="a size", choices=(1, 3, 5), flag="--sz", metavar="N")
    hidden: str = setting("", help="not on the command line", cli=False)
    tags: tuple[int, ...] = setting(default_factory=tuple, help="a factory default")
    plain: int = 0


def field(name):
    return next(f for f in dataclasses.fields(Example) if f.name == name)


def test_setting_is_a_dataclass_field_with_its_metadata():
    assert Example() == Example("a", None, 3, "", (), 0)
    assert info(Example, field("mode")) == Setting("the mode", ("a", "b"), (), "--mode", None, True, None, None, False)
    maybe = Setting("optional choice", ("x", "y"), ("--old-maybe",), "--maybe", None, True, None, None, False)
    assert info(Example, field("maybe")) == maybe
    assert info(Example, field("size")) == Setting("a size", (1, 3, 5), (), "--sz", "N", True, None, None, False)
    assert info(Example, field("hidden")).cli is False
    assert info(Example, field("plain")) == Setting("", None, (), "--plain", None, True, None, None, False)


def test_setting_requires_help():
    with pytest.raises(TypeError):
        setting(1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mode": "c"}, "--mode 'c' is unknown; choose one of a, b"),
        ({"maybe": "z"}, "--maybe 'z' is unknown; choose one of x, y"),
        ({"size": 4}, "--sz 4 is unknown; choose one of 1, 3, 5"),
    ],
)
def test_check_choices_names_the_flag_in_one_line(change, message):
    check_choices(Example(maybe="y"))
    check_choices(Example(maybe=None))
    with pytest.raises(UserError) as e:
        check_choices(dataclasses.replace(Example(), **change))
    assert str(e.value) == message


@pytest.mark.parametrize(
    "cfg, message",
    [
        (ModelConfig(block="film"), "--block 'film' is unknown"),  # type: ignore[arg-type]
        (DiffusionConfig(objective="edm"), "--objective 'edm' is unknown"),  # type: ignore[arg-type]
        (DiffusionConfig(prediction_type="score"), "--prediction-type 'score' is unknown"),  # type: ignore[arg-type]
        (TrainConfig(max_steps=1, lr_schedule="step"), "--lr-schedule 'step' is unknown"),  # type: ignore[arg-type]
        (TrainConfig(max_steps=1, on_bad_image="warn"), "--on-bad-image 'warn' is unknown"),  # type: ignore[arg-type]
        (SampleConfig(weights="both"), "--weights 'both' is unknown"),  # type: ignore[arg-type]
    ],
)
def test_every_config_checks_its_literal_fields_through_check_choices(cfg, message):
    with pytest.raises(UserError, match=message):
        cfg.validate()
