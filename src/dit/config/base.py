"""The ``to_dict``/``from_dict`` every config dataclass shares (checkpoints and cards store them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dit.errors import UserError


class DictMixin:
    """``to_dict``/``from_dict`` for the config dataclasses (every subclass is a dataclass)."""

    def to_dict(self) -> dict:
        if not dataclasses.is_dataclass(self) or isinstance(self, type):
            raise TypeError(f"{type(self).__name__} is not a dataclass instance")
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a dataclass")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}")
        return cls(**d)
