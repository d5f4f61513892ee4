"""Shared test setup: deterministic, single-threaded-friendly defaults, the `cuda` marker, and the
fixtures several folders use (`one_thread`, `data`)."""

import os

import pytest
import torch

from tests.helpers.train import make_image_folder

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


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared CPU OpenMP spin-waits make
    them ~30x slower (sampling loops ~20x, measured on the 2-core CI box); run the test on one
    thread whatever DIT_TEST_THREADS says, and restore the setting after. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 3-class image folder of 8 small RGB PNGs per class (`tests.helpers.train.make_image_folder`),
    made once per test module."""
    return make_image_folder(tmp_path_factory.mktemp("images") / "data")
