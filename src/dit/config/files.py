"""Run config files: TOML with one table per config (``[train]``, ``[model]``, ...), read and written.

``read_config`` turns a file (or the name of a preset shipped in ``dit/config/presets/``) into
``{section: {field: value}}`` with each value checked against its field's type, so a bad file is
one line naming the key. ``to_toml`` writes resolved configs back (the flat types configs hold:
str, bool, int, float, tuples of them); a key is left out where it holds None and None is the
field's default, and written as ``"none"`` where None is not the default (read back as None).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Optional, Union, get_args, get_origin

from dit.config.fields import field_types, strip_optional
from dit.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (pyproject.toml's tomli dependency)
    import tomli as tomllib

PRESETS = Path(__file__).resolve().parent / "presets"
NONE = "none"  # how a file says None for a field whose default is something else


def preset_names(sections: Optional[Mapping[str, type]] = None) -> list[str]:
    """Names of the presets shipped with dit (``dit train --config NAME``); with ``sections``, those whose
    tables are all among them (a command's own)."""
    names = []
    for path in sorted(PRESETS.glob("*.toml")):
        tables = {k for k, v in load_toml(path).items() if isinstance(v, dict)}
        if sections is None or tables <= set(sections):
            names.append(path.stem)
    return names


def find_config(name: str) -> Path:
    """``name`` as a file, else the preset ``dit/config/presets/NAME.toml``; one-line error if neither."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    preset = PRESETS / f"{name}.toml"
    if "/" not in name and preset.is_file():
        return preset
    raise UserError(f"--config {name}: no such file, and no preset of that name (presets: {', '.join(preset_names())})")


def load_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; one-line error for an unreadable or malformed file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it ({e.__class__.__name__}: {e})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {' '.join(str(e).split())}") from None


def read_config(name: str, sections: Mapping[str, type]) -> dict[str, dict[str, Any]]:
    """The settings file ``name`` (a path or a preset) as ``{section: {field: value}}``, every key known
    and every value of its field's type. A key outside any table belongs to the one section that has it."""
    path = find_config(name)
    data = load_toml(path)
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            for k, v in value.items():
                out[key][k] = _checked(path, key, sections[key], k, v)
            continue
        owners = [s for s, cls in sections.items() if key in field_types(cls)]
        if len(owners) != 1:
            raise UserError(f"{path}: {_unknown(key, sections, owners)}")
        out[owners[0]][key] = _checked(path, owners[0], sections[owners[0]], key, value)
    return out


def _unknown(key: str, sections: Mapping[str, type], owners: list[str]) -> str:
    if owners:
        return f"key {key!r} is in {' and '.join(f'[{s}]' for s in owners)}; put it under one of them"
    names = [*sections, *(k for cls in sections.values() for k in field_types(cls))]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; the tables are {', '.join(f'[{s}]' for s in sections)}"


def _checked(path: Path, section: str, cls: type, key: str, value: Any) -> Any:
    types = field_types(cls)
    if key not in types:
        close = difflib.get_close_matches(key, list(types), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{path}: unknown key {key!r} in [{section}]{hint}")
    default = {f.name: f.default for f in dataclasses.fields(cls)}[key]
    try:
        return convert(types[key], value, none_word=default is not None)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: [{section}] {key} {e}, got {value!r}") from None


def convert(tp: Any, value: Any, none_word: bool = False) -> Any:
    """``value`` (as TOML gives it) as type ``tp``; TypeError/ValueError saying what was expected."""
    inner, optional = strip_optional(tp)
    if optional and none_word and value == NONE:
        return None
    origin = get_origin(inner)
    if origin is Literal:
        if value not in get_args(inner):
            raise ValueError(f"must be one of {', '.join(map(str, get_args(inner)))}")
        return value
    if origin is Union:  # e.g. int or (H, W)
        for option in get_args(inner):
            try:
                return convert(option, value)
            except (TypeError, ValueError):
                pass
        raise TypeError(f"must be {' or '.join(_name(o) for o in get_args(inner))}")
    if origin is tuple:
        args = get_args(inner)
        if not isinstance(value, list) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise TypeError(f"must be {_name(inner)}")
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        return tuple(convert(t, v) for t, v in zip(items, value))
    if inner is bool and isinstance(value, bool):
        return value
    if inner is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if inner is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if inner is str and isinstance(value, str):
        return value
    raise TypeError(f"must be {_name(inner)}")


def _name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        return f"a list of {_PLURAL.get(args[0], args[0])}" + (
            "" if args[-1] is Ellipsis else f" (exactly {len(args)})"
        )
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def to_toml(sections: Mapping[str, Any], header: str = "", omit: Optional[Mapping[str, Iterable[str]]] = None) -> str:
    """The configs ``{section: dataclass instance}`` as a TOML document that ``read_config`` reads back equal
    (``omit``: fields per section left out, e.g. those a command derives from its data)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for section, cfg in sections.items():
        lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
        for f in dataclasses.fields(cfg):
            if f.name in (omit or {}).get(section, ()):
                continue
            value = getattr(cfg, f.name)
            if value is None:
                if f.default is None or f.default is dataclasses.MISSING:
                    continue
                value = NONE
            lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One TOML value: a string, boolean, integer, float (inf, nan) or array of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(_escape(c) for c in value) + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
