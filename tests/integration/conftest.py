"""Fixtures the integration tests share."""

import pytest

from tests.helpers.sample import trained_run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny pixel-space DiT trained 2 steps through `dit train` (3 classes, 8×8 images): its checkpoint,
    made once per test module."""
    return trained_run(tmp_path_factory.mktemp("run"))
