"""Settings declared once: a config field carries its help, choices, aliases and flag name.

``setting(...)`` is ``dataclasses.field(...)`` with that metadata; the command lines
(``dit.cli.flags``), config files (``dit.config.files``) and :func:`check_choices` read it, so a new
setting is one field in one config class. A field's choices are its ``choices`` metadata or, when
that is absent, the values of its ``Literal`` annotation (``Optional[Literal[...]]`` also takes None).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Callable, Iterable, Literal, NamedTuple, Optional, Union

from dit.errors import UserError

MISSING: Any = dataclasses.MISSING
_KEY = "dit.setting"
# A number's lower bound, checked by check_settings (and by the generated flag's parser)
Bound = Literal[">0", ">=0"]
# How a message names a setting, given the field's name: its flag on the command line (the default),
# its keyword in the Python API and the server's JSON
Namer = Callable[[str], str]


class SettingError(UserError):
    """A one-line :class:`UserError` about one setting: ``field`` is its field name, for callers (the
    server) that answer with the setting at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Setting(NamedTuple):
    """What a field says about itself beyond its type and default."""

    help: str
    choices: Optional[tuple[Any, ...]]
    aliases: tuple[str, ...]
    flag: str
    metavar: Union[str, tuple[str, ...], None]
    cli: bool
    group: Optional[str]
    bound: Optional[Bound]
    required: bool


def setting(
    default: Any = MISSING,
    *,
    help: str,
    choices: Optional[Iterable[Any]] = None,
    aliases: Iterable[str] = (),
    flag: Optional[str] = None,
    metavar: Union[str, tuple[str, ...], None] = None,
    default_factory: Any = MISSING,
    cli: bool = True,
    group: Optional[str] = None,
    bound: Optional[Bound] = None,
    required: bool = False,
    **kw: Any,
) -> Any:
    """A dataclass field whose metadata holds help/choices/aliases/flag (``flag``: ``--field-name`` if None).

    ``cli=False`` keeps the field out of generated command lines (it is still a config-file key);
    ``group`` titles the --help section the flag is listed in; ``bound`` is a number's lower bound
    (None passes); ``required``: a command must be given it (by a flag or a config file).
    Typed ``Any`` like ``dataclasses.field`` so that ``x: int = setting(3, help=...)`` type-checks.
    """
    meta = dict(kw.pop("metadata", None) or {})
    meta[_KEY] = {
        "help": help,
        "choices": None if choices is None else tuple(choices),
        "aliases": tuple(aliases),
        "flag": flag,
        "metavar": metavar,
        "cli": cli,
        "group": group,
        "bound": bound,
        "required": required,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta, **kw)


def flag_of(f: dataclasses.Field) -> str:
    """The field's flag: its ``flag`` metadata, or ``--`` + its name with dashes."""
    meta = f.metadata.get(_KEY, {})
    return meta.get("flag") or "--" + f.name.replace("_", "-")


def info(cls: type, f: dataclasses.Field) -> Setting:
    """The :class:`Setting` of field ``f`` of dataclass ``cls`` (plain fields: empty help, Literal choices)."""
    meta = f.metadata.get(_KEY, {})
    choices = meta.get("choices")
    if choices is None:
        choices = literal_choices(field_types(cls)[f.name])
    return Setting(
        help=meta.get("help", ""),
        choices=choices,
        aliases=tuple(meta.get("aliases", ())),
        flag=flag_of(f),
        metavar=meta.get("metavar"),
        cli=bool(meta.get("cli", True)),
        group=meta.get("group"),
        bound=meta.get("bound"),
        required=bool(meta.get("required", False)),
    )


@functools.lru_cache(maxsize=None)
def field_types(cls: Any) -> dict[str, Any]:
    """The resolved annotations of ``cls`` (configs use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` → (X, True); anything else → (tp, False)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def literal_choices(tp: Any) -> Optional[tuple[Any, ...]]:
    """The values of a ``Literal`` (or ``Optional[Literal]``) annotation; None for any other type."""
    inner, _ = strip_optional(tp)
    return typing.get_args(inner) if typing.get_origin(inner) is Literal else None


def check_settings(cfg: Any, name: Optional[Namer] = None) -> None:
    """:func:`check_bounds` and :func:`check_choices` (each config's ``validate`` starts with it)."""
    check_bounds(cfg, name)
    check_choices(cfg, name)


def check_bounds(cfg: Any, name: Optional[Namer] = None) -> None:
    """:class:`SettingError` naming the setting (default: by its flag) for the first number below its ``bound``."""
    for f in dataclasses.fields(cfg):
        s = info(type(cfg), f)
        value = getattr(cfg, f.name)
        if s.bound is not None and value is not None and not in_bound(value, s.bound):
            said = name(f.name) if name else s.flag
            raise SettingError(f.name, f"{said} must be {'positive' if s.bound == '>0' else '>= 0'}, got {value}")


def check_choices(cfg: Any, name: Optional[Namer] = None) -> None:
    """:class:`SettingError` naming the setting (default: by its flag) for the first value not among its choices."""
    cls: type = type(cfg)
    for f in dataclasses.fields(cfg):
        s = info(cls, f)
        value = getattr(cfg, f.name)
        if s.choices is None or value in s.choices:
            continue
        if value is None and strip_optional(field_types(cls)[f.name])[1]:
            continue
        said = name(f.name) if name else s.flag
        raise SettingError(f.name, f"{said} {value!r} is unknown; choose one of {', '.join(map(str, s.choices))}")


def in_bound(value: Any, bound: Bound) -> bool:
    """Whether number ``value`` satisfies ``bound`` (NaN never does)."""
    return value > 0 if bound == ">0" else value >= 0
