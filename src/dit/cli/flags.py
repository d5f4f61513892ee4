"""Command-line flags generated from config fields, and configs built back from parsed flags.

Each ``setting(...)`` field of a config dataclass becomes one flag (``dit.config.fields``): its type
from the annotation (``bool`` → ``--x/--no-x``, ``Literal`` → choices, ``Tuple[int, ...]`` → one or
more values, ``Tuple[float, float]`` → two, ``list[int]`` → one comma-separated word,
``Optional[number]`` also takes ``none``), its help,
aliases and default from the field. The parsed namespace remembers which flags were given
(:func:`given`), so that a flag overrides a recipe or a config file only when it was typed.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Literal, Optional, get_args, get_origin

from dit.cli.argtypes import non_negative_float, positive_float, positive_int
from dit.config.fields import Setting, field_types, info, strip_optional

GIVEN = "_given_settings"  # namespace attribute: the dests of the generated flags that were typed


class _Recording(argparse.Action):
    """Store the value (lists as tuples) and note that the flag was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(values) if isinstance(values, list) else values)
        _note(namespace, self.dest)


class _RecordingBool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _note(namespace, self.dest)


def _note(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, GIVEN, getattr(namespace, GIVEN, frozenset()) | {dest})


def given(args: argparse.Namespace) -> frozenset[str]:
    """The dests of the generated flags given on the command line."""
    return getattr(args, GIVEN, frozenset())


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    """The fields of ``cls`` that are flags (``cli=True``), with their settings."""
    return [(f, s) for f in dataclasses.fields(cls) if (s := info(cls, f)).cli]


def add_fields(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    notes: Optional[dict[str, str]] = None,
) -> None:
    """One flag per setting of ``cls`` (fields with ``cli=False`` aside).

    Flags are listed under their field's ``group`` (a --help section, made on first use); ``notes``
    adds words to a field's help (e.g. what a recipe sets it to).
    """
    groups = {g.title: g for g in parser._action_groups}
    for f, s in fields_of(cls):
        if s.group is None:
            target: Any = parser
        else:
            target = groups.get(s.group) or groups.setdefault(s.group, parser.add_argument_group(s.group))
        target.add_argument(s.flag, *s.aliases, **_argument(cls, f, s, (notes or {}).get(f.name)))


def _argument(cls: type, f: dataclasses.Field, s: Setting, note: Optional[str]) -> dict[str, Any]:
    tp, optional = strip_optional(field_types(cls)[f.name])
    # required settings and factory defaults show no default (their help says where it comes from)
    default = None if f.default is dataclasses.MISSING or s.required else f.default
    help_text = s.help + (f" ({note})" if note else "")
    kw: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
    if tp is bool:
        return {**kw, "action": _RecordingBool}
    kw["action"] = _Recording
    kw["metavar"] = s.metavar or s.flag.lstrip("-").upper().replace("-", "_")
    if get_origin(tp) is list:  # a comma-separated list in one word: --seeds 0,1,2
        (item,) = get_args(tp) or (str,)
        kw["type"] = _comma_list(item if item in (int, float) else str)
        kw["metavar"] = s.metavar or "A,B,..."
        return kw
    if get_origin(tp) is tuple:
        args = get_args(tp)
        kw["nargs"] = "+" if args[-1] is Ellipsis else len(args)
        kw["type"] = _parser(args[0], s.bound, optional=False)
        return kw
    if s.choices is not None or get_origin(tp) is Literal:
        choices = s.choices if s.choices is not None else get_args(tp)
        return {**kw, "choices": choices, "type": type(choices[0]), "metavar": s.metavar}
    kw["type"] = _parser(tp, s.bound, optional)
    return kw


_BOUNDED: dict[tuple[Any, Optional[str]], Callable[[str], Any]] = {
    (int, ">0"): positive_int,
    (float, ">0"): positive_float,
    (float, ">=0"): non_negative_float,
}


def _parser(tp: Any, bound: Optional[str], optional: bool) -> Callable[[str], Any]:
    """The argparse type of one value: bounded numbers, and ``none`` for an optional number."""
    base = _BOUNDED.get((tp, bound), tp if tp in (int, float, str) else str)
    if not optional or tp is str:
        return base

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    parse.__name__ = getattr(base, "__name__", "value")  # argparse names the type in its error
    return parse


def add_alias(
    parser: argparse.ArgumentParser,
    cls: type,
    name: str,
    flag: str,
    *,
    parse: Callable[[str], Any],
    metavar: str,
    note: str,
) -> None:
    """Another spelling of setting ``name`` of ``cls`` whose text ``parse`` reads (the official ``--sample-dir DIR``
    for ``--out DIR/``); listed beside the setting's own flag."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    s = info(cls, f)
    target = next((g for g in parser._action_groups if g.title == s.group), parser)
    target.add_argument(
        flag,
        dest=name,
        type=parse,
        action=_Recording,
        default=argparse.SUPPRESS,
        metavar=metavar,
        help=f"{s.flag} {note}",
    )


def _comma_list(item: Callable[[str], Any]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        return [item(v) for v in text.split(",") if v.strip()]

    parse.__name__ = f"comma-separated {getattr(item, '__name__', 'value')} list"
    return parse


def from_args(cls: type, args: argparse.Namespace, base: Any = None) -> Any:
    """``base`` (default: ``cls()``) with the value of every flag of ``cls`` that was given."""
    names = {f.name for f, _ in fields_of(cls)}
    changes = {k: getattr(args, k) for k in given(args) if k in names}
    return dataclasses.replace(base if base is not None else cls(), **changes)
