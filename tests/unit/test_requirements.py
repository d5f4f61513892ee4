"""The torch floor is true: pyproject's pin equals dit.requirements.MIN_TORCH, the APIs that set it
import, and an older torch gets one error line from `dit`."""

from __future__ import annotations

import re
from pathlib import Path

from dit import requirements
from dit.cli.main import main

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_pin_is_the_checked_floor():
    pin = re.search(r'"torch>=([\d.]+)"', PYPROJECT.read_text()).group(1)
    assert requirements.parse_version(pin) == requirements.MIN_TORCH


def test_the_apis_that_set_the_floor_are_public():
    from torch.distributed.fsdp import fully_shard  # noqa: F401  (--fsdp; public from 2.6)
    from torch.distributed.tensor import distribute_tensor  # noqa: F401
    from torch.serialization import safe_globals  # noqa: F401


def test_versions_below_the_floor_are_refused():
    assert requirements.torch_too_old("2.5.1") and ">= 2.6" in requirements.torch_too_old("2.5.1")
    for ok in ("2.6.0", "2.13.0+cpu", "2.7.0a0+git1234", "3.0"):
        assert requirements.torch_too_old(ok) is None, ok


def test_dit_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(requirements.metadata, "version", lambda name: "2.4.1")
    assert main(["flops"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: dit needs torch >= 2.6") and "2.4.1" in err
