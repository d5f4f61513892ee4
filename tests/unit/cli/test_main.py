"""The `dit` entry point: help lists sub-commands, user errors become one line and exit 2."""

import subprocess
import sys

import pytest

from dit.cli import main as cli_main
from dit.errors import UserError


def test_help_lists_every_subcommand(capsys):
    assert cli_main.main([]) == 0
    out = capsys.readouterr().out
    for name in cli_main.SUBCOMMANDS:
        assert name in out


def test_user_error_is_one_line_exit_2(monkeypatch, capsys):
    def boom(args):
        raise UserError("bad thing; do this instead")

    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    sub = parser._subparsers._group_actions[0]
    p = sub.add_parser("boom")
    p.set_defaults(_run=boom)
    assert cli_main.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: bad thing; do this instead"


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "dit", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("dit ")


def test_leave_exits_with_the_status_and_a_torchrun_rank_skips_interpreter_shutdown(monkeypatch, capsys):
    import os

    from dit.cli.main import leave
    from dit.runtime import distributed

    with pytest.raises(SystemExit) as ended:
        leave(3)
    assert ended.value.code == 3

    class Exited(Exception):
        pass

    def fake_exit(status):
        raise Exited(status)

    monkeypatch.setattr(distributed, "_group", object())
    monkeypatch.setattr(os, "_exit", fake_exit)
    print("written before the exit", end="")
    with pytest.raises(Exited) as ended:
        leave(2)
    assert ended.value.args == (2,)
    assert capsys.readouterr().out == "written before the exit"
