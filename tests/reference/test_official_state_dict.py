"""State-dict compatibility with the official DiT checkpoints.

The key → shape maps in shared/reference/official_dit_state_dict_*.json were taken from the
official ``models.py``; ours must equal them exactly so ``DiT-XL-2-256x256.pt`` (and the 512 one)
load with ``strict=True``. Big models are built on the meta device, so this is instant.
The JSON files are copied into tests/reference/data/ so a fresh clone checks them too.
"""

import json
from pathlib import Path

import pytest
import torch

from dit.models import DiT_models

REFERENCE = Path(__file__).resolve().parent / "data"
FILES = [
    "official_dit_state_dict_S2_256.json",
    "official_dit_state_dict_XL2_256.json",
    "official_dit_state_dict_XL2_512.json",
]


def load_reference(filename: str) -> dict:
    return json.loads((REFERENCE / filename).read_text())


@pytest.mark.parametrize("filename", FILES)
def test_key_shape_map_equals_official(filename):
    ref = load_reference(filename)
    with torch.device("meta"):
        model = DiT_models[ref["model"]](input_size=ref["input_size"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref["state_dict"]
    assert list(ours) == list(ref["state_dict"])  # same order too
    assert not list(model.buffers())  # official has no buffers
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == ref["trainable_params"]
    frozen = {n: list(p.shape) for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == ref["non_trainable"]


@pytest.mark.parametrize("filename", FILES)
def test_official_shaped_checkpoint_loads_strictly(filename):
    ref = load_reference(filename)
    with torch.device("meta"):
        model = DiT_models[ref["model"]](input_size=ref["input_size"])
        checkpoint = {k: torch.empty(shape) for k, shape in ref["state_dict"].items()}
    result = model.load_state_dict(checkpoint, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(RuntimeError):  # strictness really is checked
        model.load_state_dict({**checkpoint, "extra.weight": torch.empty(1, device="meta")}, strict=True, assign=True)
