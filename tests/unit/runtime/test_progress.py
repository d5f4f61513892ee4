"""Progress bars only on a terminal; elsewhere one whole line every $DIT_PROGRESS_SECONDS and one at the end
(issue 27 item 13: a 30-minute run's log held ~17,000 carriage-return bar updates)."""

import io

import pytest

from dit.cli.main import main
from dit.errors import UserError
from dit.runtime.progress import SECONDS_ENV, LineProgress, progress

from tests.helpers.train import train_args


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_long_loop_writes_a_first_and_a_last_line(monkeypatch):
    monkeypatch.setenv(SECONDS_ENV, "3600")
    out = io.StringIO()
    assert list(progress(range(1000), desc="sample", unit="batch", stream=out)) == list(range(1000))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2, lines
    assert lines[0].startswith("sample: 1/1000 batch (0%)") and lines[1].startswith("sample: 1000/1000 batch (100%)")


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(SECONDS_ENV, "0")
    out = io.StringIO()
    bar = progress(total=5, initial=2, desc="train", unit="step", stream=out)
    assert isinstance(bar, LineProgress)
    for _ in range(3):
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("train: 5/5 step (100%)")
    assert out.getvalue().splitlines()[-1].endswith("loss=0.5") and len(out.getvalue().splitlines()) == 3
    monkeypatch.setenv(SECONDS_ENV, "soon")
    with pytest.raises(UserError, match=f"{SECONDS_ENV}='soon' is not a number of seconds"):
        progress(range(3), desc="x", stream=io.StringIO())


def test_on_a_terminal_it_is_a_bar_and_disabled_it_is_silent():
    term = Terminal()
    list(progress(range(3), desc="ddim", stream=term))
    assert "\r" in term.getvalue() and "ddim" in term.getvalue()
    quiet = io.StringIO()
    list(progress(range(3), desc="ddim", enabled=False, stream=quiet))
    assert quiet.getvalue() == ""


def test_dit_train_into_a_log_writes_lines_not_bar_redraws(tmp_path, capsys, data):
    assert main(train_args(data, tmp_path / "run", "--max-steps", "6", "--log-every", "3")) == 0
    err = capsys.readouterr().err
    assert "\r" not in err, err[:500]
    assert any(line.startswith("train: 6/6 step (100%)") for line in err.splitlines()), err
