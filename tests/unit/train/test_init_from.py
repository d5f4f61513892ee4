"""dit.train.init_from.merge_pretrained: what carries over to a fine-tuned model, what is re-made."""

from __future__ import annotations

import pytest
import torch

from dit.config import ModelConfig
from dit.errors import UserError
from dit.models import build_model
from dit.train.init_from import CLASS_TABLE, POS_EMBED, merge_pretrained


def tiny(num_classes=3, input_size=8, depth=2, dropout=0.1, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        name=None,
        input_size=input_size,
        in_channels=3,
        num_classes=num_classes,
        depth=depth,
        hidden_size=32,
        num_heads=2,
        patch_size=2,
        class_dropout_prob=dropout,
    )
    return build_model(cfg).state_dict()


def test_same_model_loads_everything():
    src, fresh = tiny(seed=1), tiny(seed=2)
    merged, report = merge_pretrained(fresh, src, "src")
    assert not report.remade and sorted(report.loaded) == sorted(fresh)
    assert all(torch.equal(merged[k], src[k]) for k in src)


def test_new_classes_and_size_remake_table_and_positions_only():
    src, fresh = tiny(num_classes=3, input_size=8, seed=1), tiny(num_classes=5, input_size=16, seed=2)
    merged, report = merge_pretrained(fresh, src, "src")
    assert set(report.remade) == {POS_EMBED, CLASS_TABLE}
    assert "4 → 6 rows" in report.remade[CLASS_TABLE] and "64 tokens" in report.remade[POS_EMBED]
    assert torch.equal(merged[POS_EMBED], fresh[POS_EMBED])  # the new grid's sin-cos table (16/2 = 8 → 64 tokens)
    assert torch.equal(merged[CLASS_TABLE][:-1], fresh[CLASS_TABLE][:-1])  # new classes: fresh init
    assert torch.equal(merged[CLASS_TABLE][-1], src[CLASS_TABLE][-1])  # the learned null class kept
    for k in fresh:
        if k not in (POS_EMBED, CLASS_TABLE):
            assert torch.equal(merged[k], src[k]), k


def test_null_row_not_copied_when_asked_not_to():
    src, fresh = tiny(num_classes=3, seed=1), tiny(num_classes=5, seed=2)
    merged, report = merge_pretrained(fresh, src, "src", keep_null=False)
    assert torch.equal(merged[CLASS_TABLE], fresh[CLASS_TABLE]) and "kept" not in report.remade[CLASS_TABLE]


def test_another_architecture_is_refused_with_the_tensors_named():
    with pytest.raises(UserError, match=r"does not fit this model.*not in this model: blocks\.2\."):
        merge_pretrained(tiny(depth=2), tiny(depth=3), "deep.pt")
    with pytest.raises(UserError, match=r"mis-shaped or missing: blocks\.2\..* missing"):
        merge_pretrained(tiny(depth=3), tiny(depth=2), "shallow.pt")
