"""Class names ↔ label ids: ImageNet-1k's names and the folder names our checkpoints store.

ImageNet label ids confuse users (official DiT issue #73: "which id is a golden retriever?").
``imagenet_classes.txt`` beside this module lists the 1,000 ImageNet-1k class names in label
order (line i = id i), one short name each, as torchvision ships them
(``torchvision/models/_meta.py``, BSD-3-Clause, copyright Soumith Chintala 2016 and contributors).
A diffusers ``model_index.json`` may carry ``id2label`` with comma-separated synonyms
("tench, Tinca tinca"); every synonym then names the class, as in diffusers' ``get_label_ids``.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

from dit.errors import UserError, shorten

IMAGENET_NUM_CLASSES = 1000
MAX_NAME = 200  # longer "names" get no did-you-mean search (difflib is quadratic in the length)
_IMAGENET_FILE = Path(__file__).with_name("imagenet_classes.txt")


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in label order (``golden retriever`` is 207)."""
    names = tuple(line.strip() for line in _IMAGENET_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != IMAGENET_NUM_CLASSES:
        raise UserError(f"{_IMAGENET_FILE} lists {len(names)} names, not 1000; the installation is damaged")
    return names


def default_class_names(num_classes: int, stored: Optional[Sequence[str]] = None) -> Optional[list[str]]:
    """The names a model's classes go by: the stored ones, else ImageNet's for 1000 classes, else None."""
    if stored:
        return [str(n) for n in stored]
    if num_classes == IMAGENET_NUM_CLASSES:
        return list(imagenet_class_names())
    return None


def name_table(names: Sequence[str]) -> dict[str, int]:
    """Lower-case name and every comma-separated synonym → label id (the first id wins on a clash)."""
    table: dict[str, int] = {}
    for i, name in enumerate(names):
        for alias in [name, *str(name).split(",")]:
            table.setdefault(alias.strip().lower(), i)
    return table


def class_index(
    name_or_id: Union[str, int],
    num_classes: int,
    names: Optional[Sequence[str]] = None,
    listing: str = "pipe.class_names lists them",
) -> int:
    """The label id of a class name (case-insensitive, synonyms allowed) or an id; UserError otherwise.

    ``listing``: where the caller's user finds the names (the Python attribute, an HTTP route, a flag).
    """
    if num_classes == 0:
        raise UserError("this model is unconditional (0 classes); it takes no class")
    if isinstance(name_or_id, bool):
        raise UserError(f"class {shorten(name_or_id)} is not a class name or id")
    table = name_table(names or [])
    if isinstance(name_or_id, str) and name_or_id.strip().lower() in table:  # a name first: folders may be "10", "2"
        return table[name_or_id.strip().lower()]
    if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.strip().isdigit()):
        if len(str(name_or_id)) > 20:  # no 5,000-digit int parsing (Python refuses over 4,300 digits)
            raise UserError(f"class id {shorten(name_or_id)} is outside 0..{num_classes - 1}")
        i = int(name_or_id)
        if not 0 <= i < num_classes:
            raise UserError(f"class id {i} is outside 0..{num_classes - 1}; the model has {num_classes} classes")
        return i
    if not isinstance(name_or_id, str):
        raise UserError(f"class {shorten(name_or_id)} is not a class name or id")
    if not names:
        raise UserError(
            f"this model stores no class names; give a class id in 0..{num_classes - 1}, not {shorten(name_or_id)}"
        )
    key = name_or_id.strip().lower()
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.6) if len(key) <= MAX_NAME else []
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; {listing}"
    raise UserError(f"unknown class {shorten(name_or_id)}{hint}")
