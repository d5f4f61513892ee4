"""Per-example streams: independent of batch composition, distinct across examples and purposes."""

import torch

from dit.runtime import rng


def test_rows_do_not_depend_on_batch_split():
    whole = rng.randn_rows((6, 3, 4), rng.example_generators(7, range(6), rng.NOISE))
    first = rng.randn_rows((2, 3, 4), rng.example_generators(7, range(2), rng.NOISE))
    rest = rng.randn_rows((4, 3, 4), rng.example_generators(7, range(2, 6), rng.NOISE))
    assert torch.equal(whole, torch.cat([first, rest]))


def test_streams_differ_by_index_purpose_and_seed():
    a = rng.randn_rows((1, 64), rng.example_generators(0, [5], rng.NOISE))
    assert not torch.equal(a, rng.randn_rows((1, 64), rng.example_generators(0, [6], rng.NOISE)))
    assert not torch.equal(a, rng.randn_rows((1, 64), rng.example_generators(0, [5], rng.FLIP)))
    assert not torch.equal(a, rng.randn_rows((1, 64), rng.example_generators(1, [5], rng.NOISE)))


def test_uniform_rows_in_unit_interval_and_roughly_uniform():
    u = rng.rand_rows((2000, 1), rng.example_generators(3, range(2000)))
    assert u.min() >= 0 and u.max() < 1
    # Mean of 2000 U(0,1) has sd 0.0065: 5 sd tolerance.
    assert abs(u.mean().item() - 0.5) < 0.033
