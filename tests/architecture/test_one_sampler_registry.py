"""Sampling has one shape: one sampler registry for both objectives, and every sampler on one signature.

The issue's done-criterion (``grep -rnE "^SAMPLERS\\b|SAMPLERS =" src/dit`` finds one line) is checked
here over the source, and the registry's entries are checked against the signature every caller uses.
"""

import inspect
import re
from pathlib import Path

from dit.config import OBJECTIVES, SAMPLER_NAMES
from dit.diffusion.registry import SAMPLERS

SRC = Path(__file__).resolve().parents[2] / "src" / "dit"
DEFINITION = re.compile(r"^SAMPLERS\b|SAMPLERS =")


def test_one_sampler_registry_in_the_source():
    found = [
        f"{p.relative_to(SRC)}:{n}"
        for p in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if DEFINITION.search(line)
    ]
    assert len(found) == 1 and found[0].startswith("diffusion/registry.py:"), found


def test_every_sampler_has_the_one_signature_and_names_its_algorithm():
    assert list(SAMPLER_NAMES) == list(SAMPLERS)  # the torch-free copy the command lines list
    for name, entry in SAMPLERS.items():
        params = list(inspect.signature(entry.fn).parameters.values())
        assert [p.name for p in params[:3]] == ["denoiser", "x", "steps"], name
        assert all(p.kind is p.KEYWORD_ONLY for p in params[3:]), name
        assert {"generator", "callback", "progress"} <= {p.name for p in params[3:]}, name
        assert entry.objective in OBJECTIVES, name
        assert (entry.fn.__doc__ or "").strip(), f"{name}: the docstring names its algorithm"
