"""The README stays a front door and cannot drift from the code: at most 250 lines, every local
link names a file that exists, every `dit ...` command in a shell block parses with the real CLI
parser (the docs/ pages' too, placeholders such as `...` aside), and CI (.ci/run) runs the README's
test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dit.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = page.read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # a shell comment in a code block is no heading
    headings = re.findall(r"^#+ (.+)$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def local_links(page: Path) -> list[str]:
    """Link targets of a Markdown page that point into the repository (no scheme, no pure anchor)."""
    targets = LINK.findall(page.read_text(encoding="utf-8"))
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def shell_commands(text: str) -> list[str]:
    """Each command of the fenced shell blocks: continuation lines joined, `&&` chains split."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def dit_argv(command: str) -> list[str] | None:
    """The argv after `dit` of a `dit ...` command, or after `-m dit.cli.main` of a torchrun one."""
    words = shlex.split(command, comments=True)
    if words[:1] == ["dit"]:
        return words[1:]
    if words[:1] == ["torchrun"] and "dit.cli.main" in words:
        return words[words.index("dit.cli.main") + 1 :]
    return None


def dit_commands(page: Path) -> list[list[str]]:
    """The `dit` argvs of a page's shell blocks; a command with a placeholder (`...`) is left out."""
    commands = shell_commands(page.read_text(encoding="utf-8"))
    return [argv for c in commands if "..." not in c and "\u2026" not in c and (argv := dit_argv(c))]


README_COMMANDS = dit_commands(README)
DOCS_COMMANDS = [(page.name, argv) for page in DOC_PAGES for argv in dit_commands(page)]


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to a docs/ page"


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_local_link_names_an_existing_file(page):
    missing = [t for t in local_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_local_link_anchor_names_a_heading(page):
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        if anchor and path.endswith(".md") and anchor not in heading_anchors(page.parent / path):
            broken.append(target)
    assert not broken, f"{page.name} links to headings that do not exist: {broken}"


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in local_links(README)}
    assert not [p.name for p in DOC_PAGES if p.resolve() not in linked], "a docs/ page the README does not link"


def test_the_readme_shows_the_commands_it_promises():
    subcommands = {argv[0] for argv in README_COMMANDS}
    assert {"demo", "train", "sample", "eval", "serve"} <= subcommands
    assert any("--init-from" in argv for argv in README_COMMANDS)  # fine-tuning


def assert_parses(argv: list[str], where: str, capsys) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `dit {' '.join(argv)}` no longer parses: {capsys.readouterr().err.strip()}")
    assert args.command == argv[0]


def test_readme_has_no_placeholder_commands():
    commands = shell_commands(README.read_text(encoding="utf-8"))
    assert [c for c in commands if c.startswith("dit ") and ("..." in c or "\u2026" in c)] == []


@pytest.mark.parametrize("argv", README_COMMANDS, ids=lambda argv: " ".join(argv)[:60])
def test_readme_dit_command_parses_with_the_cli(argv, capsys):
    assert_parses(argv, "README.md", capsys)


@pytest.mark.parametrize("page,argv", DOCS_COMMANDS, ids=lambda x: x if isinstance(x, str) else " ".join(x)[:50])
def test_docs_dit_command_parses_with_the_cli(page, argv, capsys):
    assert_parses(argv, f"docs/{page}", capsys)


def test_the_parser_check_rejects_a_flag_that_does_not_exist(capsys):
    # The check above is only worth something if a drifted flag fails it.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--ckpt", "x.pt", "--no-such-flag"])
    assert "--no-such-flag" in capsys.readouterr().err


def test_ci_runs_the_readme_test_command():
    test_commands = [c for c in shell_commands(README.read_text(encoding="utf-8")) if "pytest" in c]
    assert test_commands == ["python -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_commands[0] in (line.strip() for line in ci)


def test_readme_package_table_is_the_layering_law():
    from tests.architecture.test_layering import LAYERS

    section = README.read_text(encoding="utf-8").split("## The package", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    table = [set(re.findall(r"`(\w+)`", row)) for row in rows]
    assert table == LAYERS, "README's package table, lowest layer first, must list tests/architecture's LAYERS"
