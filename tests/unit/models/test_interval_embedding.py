"""MeanFlow's interval embedding (DiT(interval_embedding=True)): off, the paper's DiT; on, the same model at start."""

import pytest
import torch

from dit.errors import UserError
from dit.models import DiT

SIZE = dict(input_size=16, patch_size=4, in_channels=3, hidden_size=64, depth=2, num_heads=2, num_classes=10)


def _pair(trained: bool = False):
    """(plain DiT, DiT with the interval embedding) from one seed; ``trained``: both given the same random
    weights first (a fresh DiT outputs 0, its adaLN and output layers being zero-initialised)."""
    torch.manual_seed(0)
    plain = DiT(learn_sigma=False, **SIZE).eval()
    torch.manual_seed(0)
    mean = DiT(learn_sigma=False, interval_embedding=True, **SIZE).eval()
    if trained:
        with torch.no_grad():
            for p in plain.parameters():
                p.add_(0.05 * torch.randn_like(p))
        mean.load_state_dict(plain.state_dict(), strict=False)
    return plain, mean


def test_the_option_adds_only_its_own_keys_and_draws_every_other_weight_as_before():
    plain, mean = _pair()
    a, b = plain.state_dict(), mean.state_dict()
    assert sorted(set(b) - set(a)) == [f"interval_embedder.mlp.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.config.interval_embedding is False and mean.config.interval_embedding is True


def test_zero_initialised_it_leaves_the_output_unchanged_whatever_the_interval():
    plain, mean = _pair(trained=True)
    x, t, y = torch.randn(4, 3, 16, 16), torch.rand(4) * 1000, torch.tensor([0, 3, 5, 9])
    out = plain(x, t, y)
    assert out.abs().max() > 0.01
    assert torch.equal(mean(x, t, y), out) and torch.equal(mean(x, t, y, interval=t * 0.5), out)


def test_once_trained_the_interval_changes_the_output_and_a_plain_model_refuses_one():
    plain, mean = _pair(trained=True)
    with torch.no_grad():
        mean.interval_embedder.mlp[2].weight.normal_(std=0.02)
    x, t, y = torch.randn(2, 3, 16, 16), torch.full((2,), 500.0), torch.tensor([1, 2])
    assert not torch.allclose(mean(x, t, y, interval=t * 0.5), mean(x, t, y))
    with pytest.raises(UserError, match="interval"):
        plain(x, t, y, interval=t)
