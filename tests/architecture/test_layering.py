"""Dependencies run one way (README, "The package"): every import of every module under src/dit,
at the top or inside a function, goes to its own layer's package or a lower layer.

The order, lowest first (a package may import its own modules and anything in a lower layer):

    errors, requirements ← config ← runtime ← models, diffusion, vae, data ← weights ← sampling
    ← train ← evaluation ← pipeline ← serve, study ← demo ← cli

``demo`` sits above ``study``: `dit demo` is a one-run study with extra pictures, so it runs the
study's setup, training and evaluation and its command lines rather than a copy of them.

Within a layer, packages do not import each other (``models`` and ``diffusion`` in particular),
except the pairs in ``SIDEWAYS``. ``dit/__init__.py`` (the lazy ``dit.Pipeline`` attribute keeps
``import dit`` light) and ``dit/__main__.py`` (the ``python -m dit`` entry point) are the package's
doors, not a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dit"

LAYERS: list[set[str]] = [
    {"errors", "requirements"},
    {"config"},
    {"runtime"},
    {"models", "diffusion", "vae", "data"},
    {"weights"},
    {"sampling"},
    {"train"},
    {"evaluation"},
    {"pipeline"},
    {"serve", "study"},
    {"demo"},
    {"cli"},
]
DOORS = {"__init__", "__main__"}
SIDEWAYS: set[tuple[str, str]] = set()  # (importer, imported) pairs allowed within one layer: none today
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str | None:
    """``dit.models.dit`` → ``models``; ``dit.config`` → ``config``; ``dit`` → None (the package door)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "dit" and len(parts) > 1 else None


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def dit_imports(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) of every ``dit`` import in ``path``: top level, in functions, under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name == "dit" or a.name.startswith("dit.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "dit" or mod.startswith("dit."):
                if mod == "dit":  # `from dit import models` imports the sub-package (`__version__`: the door)
                    found += [(node.lineno, f"dit.{a.name}") for a in node.names if not a.name.startswith("__")]
                else:
                    found.append((node.lineno, mod))
    return found


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def violations(path: Path, src: Path = SRC) -> list[str]:
    me = unit_of(module_name(path, src))
    if me is None or (path.parent == src and path.stem in DOORS):
        return []
    out = []
    for line, target in dit_imports(path, src):
        other = unit_of(target)
        if other is None or other == me or other in DOORS:
            if other in DOORS or target == "dit":
                out.append(f"{path.relative_to(src.parent)}:{line} imports the package door {target}")
            continue
        if other not in RANK:
            out.append(f"{path.relative_to(src.parent)}:{line} imports {target}, a unit missing from LAYERS")
        elif RANK[other] > RANK[me]:
            out.append(f"{path.relative_to(src.parent)}:{line} imports {target}: {other} is above {me}")
        elif RANK[other] == RANK[me] and (me, other) not in SIDEWAYS:
            out.append(f"{path.relative_to(src.parent)}:{line} imports {target}: {other} is beside {me}")
    return out


def test_every_unit_is_in_a_layer():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    units -= DOORS | {"__pycache__"}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS (and the README's layer table)"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC.parent)))
def test_imports_run_one_way(path):
    assert violations(path) == []


def test_the_checker_catches_an_upward_and_a_sideways_import(tmp_path):
    """The test above can fail: a models module importing train (in a function) and diffusion is refused."""
    bad = tmp_path / "dit" / "models" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "import torch\n\n\ndef f():\n    from dit.train.trainer import train\n    import dit.diffusion.gaussian\n"
    )
    found = violations(bad, tmp_path / "dit")
    assert len(found) == 2 and "train is above models" in found[0] and "diffusion is beside models" in found[1]
