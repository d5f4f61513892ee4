"""Shared test setup: deterministic, single-threaded-friendly defaults and the `cuda` marker."""

import os

import pytest
import torch

# Tests use tiny tensors, where thread start-up costs more than it saves (measured: a tiny DiT
# forward takes ~0.003 s on one thread vs ~0.35 s on two when the cores are busy). Override with
# DIT_TEST_THREADS. Subprocesses started by tests (torchrun, the CLI) choose their own.
torch.set_num_threads(int(os.environ.get("DIT_TEST_THREADS", "1")))


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
