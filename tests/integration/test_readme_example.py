"""The README's Python example, run as a notebook would run it: the code block verbatim, against a
tiny DiTPipeline cached as facebook/DiT-XL-2-256 in a test-made Hugging Face cache (offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.hub import cache_with_dit_xl

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_python_example_runs_end_to_end(tmp_path, monkeypatch, capsys):
    cache, _ = cache_with_dit_xl(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_python_example(), str(README), "exec"), scope)
    assert capsys.readouterr().out.strip() == "golden retriever 0"  # what the comment in the example says
    assert len(scope["images"]) == 3 and Image.open(tmp_path / "retriever.png").size == (32, 32)
    card = scope["card"]["settings"]
    assert (card["num_sampling_steps"], card["cfg_scale"], card["class_labels"]["labels"]) == (50, 4.0, [207, 207, 0])
