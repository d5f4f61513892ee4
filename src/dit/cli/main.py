"""Entry point of the ``dit`` command.

Each sub-command lives in its own module ``dit.cli.<name>`` exposing:

* ``HELP``: one line shown by ``dit --help``;
* ``add_arguments(parser)``: its flags, each with a help text;
* ``run(args) -> int``: the work, returning the exit status.

Modules import heavy dependencies inside ``run`` so that ``dit --help`` stays fast.
A :class:`dit.errors.UserError` raised anywhere becomes ``error: <message>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from dit.errors import UserError, one_line

# Sub-command name → module. Add one line per new sub-command.
SUBCOMMANDS: dict[str, str] = {
    "flops": "dit.cli.flops",
    "extract-latents": "dit.cli.extract_latents",
    "train": "dit.cli.train",
    "convert": "dit.cli.convert",
    "sample": "dit.cli.sample",
    "eval": "dit.cli.eval",
    "make-reference": "dit.cli.make_reference",
    "convert-inception": "dit.cli.convert_inception",
    "train-classifier": "dit.cli.train_classifier",
    "demo": "dit.cli.demo",
    "serve": "dit.cli.serve",
    "study": "dit.cli.study",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default shown once, and only where it says something.

    argparse's defaults formatter appends ``(default: X)`` to every flag: beside a help text that
    already names its default it printed two (``(default: cuda when available) (default: None)``),
    and on switches it printed the attribute's value (``--no-flip (default: True)``). Here a help
    text that mentions a default keeps its own words; switches (store_true/store_false/const) and
    flags whose default is None (meaning "not given") get nothing appended.
    """

    _SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.default in (None, argparse.SUPPRESS)
            or isinstance(action, self._SWITCHES)
        ):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line reason, never a traceback.

    argparse's own ``error`` prints the usage block first (many lines); a bad flag gets the same
    ``error: ...`` line as every other user error here, naming where ``--help`` is.
    """

    def error(self, message: str):
        reason = " ".join(str(message).split())  # one line, whatever argparse composed
        self.exit(2, f"error: {reason}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dit",
        description="DiT: Scalable Diffusion Models with Transformers — train, sample, evaluate.",
    )
    from dit import __version__

    parser.add_argument("--version", action="version", version=f"dit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from dit.requirements import torch_too_old

    old = torch_too_old()
    if old:
        _print_error(old)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        _print_error(one_line(e))  # one line, also when re-raised by a DataLoader worker
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_error(message: str) -> None:
    """``error: MESSAGE`` and its newline in one write: torchrun ranks share a stderr pipe, and ``print``'s
    two writes (text, then the newline) let another rank's line land in between."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def entry() -> NoReturn:
    """The ``dit`` command and ``python -m dit``."""
    leave(main())


def leave(status: int) -> NoReturn:
    """End the process with ``status``; a torchrun rank ends by :func:`dit.runtime.distributed.exit_rank`
    (its docstring says why)."""
    distributed = sys.modules.get("dit.runtime.distributed")  # imported, with torch, by commands that use it
    if distributed is not None and distributed.joined_process_group():
        distributed.exit_rank(status)
    sys.exit(status)


if __name__ == "__main__":  # python -m dit.cli.main
    entry()
