"""`dit demo`: the whole pipeline on the bundled digits (see :mod:`dit.demo.pipeline`)."""

from dit.demo.pipeline import run_demo, stage_commands

__all__ = ["run_demo", "stage_commands"]
