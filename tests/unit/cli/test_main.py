"""The `dit` entry point: help lists sub-commands, user errors become one line and exit 2."""

import subprocess
import sys

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
