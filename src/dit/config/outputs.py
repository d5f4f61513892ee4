"""The output policy's one setting, shared by the commands that write a user-named file (dit.runtime.outputs)."""

from __future__ import annotations

from dataclasses import dataclass

from dit.config.base import DictMixin
from dit.config.fields import setting


@dataclass
class OutputPolicy(DictMixin):
    """Whether a command may replace an output that already exists."""

    overwrite: bool = setting(
        False,
        help="replace an existing output (the new one is written beside it, then renamed over it; what the old "
        "one holds is lost). Without it an existing output stops the command",
    )
