"""`dit train` picks precision and compilation per machine and recipe, logs the choice in one line,
and records the concrete values in the run folder (see dit.runtime.hardware for the rules)."""

import json

import pytest

from dit.cli.main import main
from dit.runtime.hardware import AUTO_PRECISION_ENV, read_cpu_features

from tests.helpers.train import train_args

pytestmark = pytest.mark.usefixtures("one_thread")  # `data` and `one_thread`: tests/conftest.py


@pytest.fixture(autouse=True)
def machine_choice(monkeypatch):
    """The machine's own choice is under test: a suite run with the choice forced must not change it."""
    monkeypatch.delenv(AUTO_PRECISION_ENV, raising=False)


def _run(data, run, *extra):
    assert main(train_args(data, run, "--max-steps", "1", "--log-every", "1", *extra)) == 0
    log = (run / "log.txt").read_text()
    speed = [line for line in log.splitlines() if "speed: " in line]
    assert len(speed) == 1, log
    return speed[0], json.loads((run / "run.json").read_text())["config"]["train"]


def test_paper_recipe_defaults_to_fp32_eager_and_says_why(data, tmp_path):
    line, train = _run(data, tmp_path / "paper")
    assert "speed: precision fp32, compile off (auto, paper recipe" in line
    assert read_cpu_features().describe() in line  # the machine the choice was made for
    assert (train["precision"], train["compile"]) == ("fp32", False)  # concrete values, not "auto"


def test_explicit_flags_win(data, tmp_path):
    line, train = _run(data, tmp_path / "given", "--precision", "bf16", "--no-compile")
    assert "precision bf16, compile off (as given)" in line
    assert (train["precision"], train["compile"]) == ("bf16", False)


def test_fast_recipe_takes_this_machines_faster_precision(data, tmp_path, monkeypatch):
    monkeypatch.setenv("DIT_CACHE_DIR", str(tmp_path / "cache"))  # a probe, if this CPU needs one, stays here
    line, train = _run(data, tmp_path / "fast", "--recipe", "fast")
    want = "bf16" if read_cpu_features().native_bf16 and "bf16 ≥" in line else "fp32"
    assert f"precision {want}, compile off (auto, recipe fast" in line
    assert train["precision"] == want


@pytest.mark.parametrize("forced", ["bf16", "fp32"])
def test_the_environment_forces_the_automatic_choice(data, tmp_path, monkeypatch, forced):
    monkeypatch.setenv(AUTO_PRECISION_ENV, forced)
    line, train = _run(data, tmp_path / "fast", "--recipe", "fast")
    assert f"precision {forced}, compile off (auto, recipe fast: the faster path here; forced by" in line
    assert train["precision"] == forced
    line, train = _run(data, tmp_path / "paper")
    assert "speed: precision fp32, compile off (auto, paper recipe" in line and train["precision"] == "fp32"
