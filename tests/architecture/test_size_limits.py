"""Small modules with one job: no module under src/dit over 450 lines, no function over 60.

A function's length is its ``def`` line (decorators left out) through its last line, docstring
included. One kind is exempt: a **table**, a function whose body (past its docstring) is straight-line
declarations, every statement a call (``parser.add_argument(...)``), an assignment of a call's
result, or a ``return`` of a literal container, with no branch, loop, ``with``, ``try`` or nested
``def``. Such a body is data written as code; splitting it would only scatter the data.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dit"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60
_LITERALS = (ast.Dict, ast.List, ast.Tuple, ast.Set)


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_declaration(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Call)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        return isinstance(stmt.value, ast.Call)
    if isinstance(stmt, ast.Return):
        return isinstance(stmt.value, _LITERALS)
    return False


def is_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether ``fn``'s body is only declarations (see the module docstring)."""
    body = fn.body[1:] if fn.body and _is_docstring(fn.body[0]) else fn.body
    return bool(body) and all(_is_declaration(s) for s in body)


def long_functions(path: Path, src: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not is_table(node):
                out.append(f"{path.relative_to(src.parent)}:{node.lineno} {node.name} is {length} lines")
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC.parent)))
def test_no_module_is_over_the_line_limit(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(SRC.parent)} is {lines} lines (limit {MAX_FILE_LINES})"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC.parent)))
def test_no_function_is_over_the_line_limit(path):
    assert long_functions(path) == []


def test_the_checker_catches_a_long_function_and_exempts_only_a_table(tmp_path):
    """The test above can fail: a 62-line function with a branch is caught; an argument table is not."""
    pad = "".join(f"    x{i} = {i}\n" for i in range(59))
    table = "".join(f"    p.add_argument('--f{i}', type=int)\n" for i in range(61))
    mod = tmp_path / "dit" / "m.py"
    mod.parent.mkdir()
    mod.write_text(
        f"def long(p):\n    if p:\n        pass\n{pad}\n\ndef table(p):\n    '''Flags.'''\n{table}\n"
        f"def looped(p):\n    for i in range(3):\n{table.replace('    p.', '        p.')}"
    )
    found = long_functions(mod, tmp_path / "dit")
    assert [f.split()[1] for f in found] == ["long", "looped"]
