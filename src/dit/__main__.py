"""``python -m dit`` is the same as the ``dit`` command."""

from dit.cli.main import entry

entry()
