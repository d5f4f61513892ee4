"""``dit eval`` of two sets that differ in image size or channel count: the scores are computed
(both sets are resized to the feature network's input), but a warning says so on the console and
in the JSON result, so a mismatch in a user's setup does not go unnoticed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers.classifier import bars_dataset, cli_trained_classifier

from .helpers import run_cli

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A tiny classifier (the feature network) and 8×8 RGB samples/reference of its task."""

    d = tmp_path_factory.mktemp("evalshape")
    cli_trained_classifier(d, n_per_class=20, epochs=1)
    xs, _ = bars_dataset(n_per_class=5, seed=1)
    xr, _ = bars_dataset(n_per_class=5, seed=2)
    np.savez(d / "samples.npz", xs)
    np.savez(d / "ref8.npz", xr)
    np.savez(d / "ref16.npz", xr.repeat(2, axis=1).repeat(2, axis=2))  # (N, 16, 16, 3)
    np.savez(d / "grey8.npz", xr[..., 0])  # (N, 8, 8): one channel
    folder = d / "ref16_folder"
    folder.mkdir()
    for i, img in enumerate(xr.repeat(2, axis=1).repeat(2, axis=2)):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return d


def _eval(capsys, d, ref: str):
    out = d / f"{ref}.json"
    code, stdout, err = run_cli(
        capsys,
        [
            "eval",
            d / "samples.npz",
            d / ref,
            "--features",
            f"classifier:{d / 'clf.safetensors'}",
            "--out",
            out,
            "--no-cache",
        ],
    )
    assert code == 0 and "Traceback" not in err, err
    # only this warning: other ones (e.g. "not comparable with published numbers") are not about shapes
    return json.loads(out.read_text()), [
        line for line in err.splitlines() if line.startswith("warning:") and "resized to the feature network" in line
    ]


@pytest.mark.parametrize(
    "ref, words",
    [
        ("ref16.npz", ["samples are 8x8 with 3 channels", "reference is 16x16 with 3 channels", "image size mismatch"]),
        ("ref16_folder", ["reference is 16x16 with 3 channels", "image size mismatch"]),
        ("grey8.npz", ["reference is 8x8 with 1 channel;", "channel count mismatch"]),
    ],
)
def test_eval_warns_when_the_sets_differ(capsys, sets, ref, words):
    result, warnings = _eval(capsys, sets, ref)
    assert len(warnings) == 1, warnings
    assert result["warnings"] == [warnings[0][len("warning: ") :]]
    for w in words:
        assert w in warnings[0], warnings[0]
    assert np.isfinite(result["fid"])  # the scores are still computed


def test_eval_of_matching_sets_warns_nothing(capsys, sets):
    result, warnings = _eval(capsys, sets, "ref8.npz")
    assert warnings == [] and "warnings" not in result
