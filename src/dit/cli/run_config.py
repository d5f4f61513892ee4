"""``--config FILE_OR_PRESET`` and ``--print-config`` of `dit train` and `dit sample`.

A command's settings resolve in one order: the dataclass defaults, then (``dit train``) the
recipe's values, then the config file, then the flags typed on the command line. The result is
what ``--print-config`` prints and what a run folder keeps as ``config.toml``; passing that file
back with ``--config`` repeats the run.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Mapping, Optional

from dit.cli.flags import fields_of, from_args, given
from dit.config.fields import info
from dit.config.files import preset_names, read_config
from dit.errors import UserError

Sections = Mapping[str, type]
Configs = dict[str, Any]


def add_config_flags(p: argparse.ArgumentParser, sections: Sections) -> None:
    """``--config`` and ``--print-config`` (hand-written: they choose where settings come from, not one setting)."""
    g = p.add_argument_group("config file")
    tables = ", ".join(f"[{s}]" for s in sections)
    presets = ", ".join(preset_names(sections)) or "none yet"
    g.add_argument(
        "--config",
        metavar="FILE_OR_PRESET",
        default=None,
        help=f"TOML settings (tables {tables}; what --print-config writes) or a shipped preset ({presets}); "
        "flags typed here override it",
    )
    g.add_argument("--print-config", action="store_true", help="write the resolved settings as TOML and exit")


def resolve(sections: Sections, args: argparse.Namespace, base: Optional[Configs] = None) -> tuple[Configs, set]:
    """(configs, explicit): ``base`` (default: each section's defaults), then the ``--config`` file, then the
    flags given; ``explicit`` holds the (section, field) pairs the file or a flag set."""
    file = read_config(args.config, sections) if getattr(args, "config", None) else {s: {} for s in sections}
    configs: Configs = {}
    explicit: set[tuple[str, str]] = set()
    for section, cls in sections.items():
        cfg = dataclasses.replace(base[section] if base else cls(), **file[section])
        configs[section] = from_args(cls, args, cfg)
        flags = {f.name for f, _ in fields_of(cls)}
        explicit |= {(section, k) for k in file[section]} | {(section, k) for k in given(args) if k in flags}
    return configs, explicit


def file_value(args: argparse.Namespace, sections: Sections, section: str, key: str) -> Any:
    """What the ``--config`` file sets ``[section] key`` to (None if no file or it does not)."""
    if not getattr(args, "config", None):
        return None
    return read_config(args.config, sections)[section].get(key)


def check_required(sections: Sections, explicit: set) -> None:
    """One-line error naming every required setting that neither a flag nor the file gave."""
    missing = [
        s.flag
        for section, cls in sections.items()
        for f in dataclasses.fields(cls)
        if (s := info(cls, f)).required and (section, f.name) not in explicit
    ]
    if missing:
        raise UserError(f"the following arguments are required: {', '.join(missing)}")
