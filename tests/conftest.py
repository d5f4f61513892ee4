"""Shared test setup: deterministic, single-threaded-friendly defaults and the `cuda` marker."""

import os

import pytest
import torch

# Two cores: keep intra-op threads bounded so parallel test processes don't thrash.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return 0
