"""Hub ids: loaded offline from a Hugging Face cache this test builds (the layout huggingface_hub
writes: models--org--name/snapshots/<commit>/..., refs/<branch>), a diffusers `DiTPipeline` repo
shaped like facebook/DiT-XL-2-256, and one-line errors for what is missing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dit
from dit.errors import UserError
from dit.runtime.checkpoint import ema_export_path
from dit.runtime.hub import looks_like_hub_id, resolve_pretrained

from tests.helpers.hub import COMMIT, add_to_cache, cache_with_dit_xl
from tests.helpers.sample import trained_run

OLD_COMMIT = "b" * 40


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A cache with facebook/DiT-XL-2-256 (a tiny 1000-class DiTPipeline) and org/tiny-dit (our export)."""
    root = tmp_path_factory.mktemp("hub")
    cache, folder = cache_with_dit_xl(root)
    ckpt = trained_run(root / "train", steps=2)
    st = ema_export_path(ckpt)
    add_to_cache(cache, "org/tiny-dit", {"weights/model.ema.safetensors": st})
    add_to_cache(
        cache, "org/tiny-dit", {"model.ema.safetensors": st, "other.ema.safetensors": st}, commit=OLD_COMMIT, branch=""
    )
    return {"cache": cache, "folder": folder, "ckpt": ckpt}


@pytest.fixture
def offline(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub["cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def test_diffusers_pipeline_repo_by_hub_id(offline):
    pipe = dit.Pipeline.from_pretrained("facebook/DiT-XL-2-256", device="cpu")
    assert pipe.path.parts[-2:] == ("snapshots", COMMIT)
    assert pipe.loaded.codec.id.startswith("local:sha256:")  # the repo's own vae/, not the SD VAE from the hub
    assert pipe.class_index("golden retriever") == 207 and pipe.class_index("Tinca tinca") == 0  # id2label synonyms
    local = dit.Pipeline.from_pretrained(offline["folder"], device="cpu")
    a = pipe(["golden retriever", 1], num_steps=2, output_type="np")
    assert a.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(a, local([207, 1], num_steps=2, output_type="np"))
    a, b = (p.protocol_card([207], num_steps=2)["settings"] for p in (pipe, local))
    assert a["vae"].pop("source") != b["vae"].pop("source")  # where the folder lies, for humans
    assert a == b  # same content hash of checkpoint and VAE: the same protocol


def test_plain_repo_one_file_and_revisions(offline):
    by_id = dit.Pipeline.from_pretrained("org/tiny-dit", device="cpu")
    by_path = dit.Pipeline.from_pretrained(offline["ckpt"], device="cpu")
    assert by_id.path.name == "model.ema.safetensors" and by_id.class_names == ["class0", "class1", "class2"]
    np.testing.assert_array_equal(
        by_id([0, 2], num_steps=2, output_type="np"), by_path([0, 2], num_steps=2, output_type="np")
    )
    # an older commit holds two weight files: say so and how to name one
    with pytest.raises(UserError, match="several weight files.*org/tiny-dit/FILE"):
        resolve_pretrained("org/tiny-dit", revision=OLD_COMMIT)
    path = resolve_pretrained("org/tiny-dit/other.ema.safetensors", revision=OLD_COMMIT)
    assert path.name == "other.ema.safetensors" and OLD_COMMIT in str(path)


def test_dit_sample_reads_the_revision_it_is_given(offline, tmp_path, capsys):
    import json

    from dit.cli.main import main

    argv = ["sample", "--num-samples", "2", "--num-sampling-steps", "2", "--no-progress", "--device", "cpu"]
    one = "org/tiny-dit/other.ema.safetensors"  # only in the older commit
    out = tmp_path / "old.npz"
    assert main([*argv, "--ckpt", one, "--revision", OLD_COMMIT, "--out", str(out)]) == 0
    card = json.loads((tmp_path / "old.npz.protocol.json").read_text())
    assert OLD_COMMIT in card["checkpoint_path"] and card["checkpoint_path"].endswith("other.ema.safetensors")
    capsys.readouterr()
    assert main([*argv, "--ckpt", one, "--out", str(tmp_path / "main.npz")]) == 2  # not on the main branch
    assert main([*argv, "--ckpt", str(offline["ckpt"]), "--revision", "v1", "--out", str(tmp_path / "l.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "applies to hub ids only" in err[-1] and len([e for e in err if e.startswith("error:")]) == 2


def test_missing_ids_and_paths_are_one_line_errors(offline):
    with pytest.raises(UserError, match="org/unknown is not in the Hugging Face cache .* HF_HUB_OFFLINE is set"):
        resolve_pretrained("org/unknown")
    with pytest.raises(UserError, match="org/tiny-dit@v9 is not in the Hugging Face cache"):
        resolve_pretrained("org/tiny-dit", revision="v9")
    with pytest.raises(UserError, match="runs/x.pt does not exist"):
        resolve_pretrained("runs/x.pt")  # a missing local file, not taken for a repository
    with pytest.raises(UserError, match="applies to hub ids only"):
        resolve_pretrained(offline["ckpt"], revision="main")


def test_a_missing_file_under_a_local_folder_is_not_asked_of_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    assert looks_like_hub_id("org/tiny-dit/sub/w.safetensors")  # no folder "org" here: a repository's file
    assert not looks_like_hub_id("results/run/checkpoints/0000100.pt")
    monkeypatch.setattr("dit.runtime.hub._download", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(UserError, match="results/run/checkpoints/0000100.pt does not exist"):
        resolve_pretrained("results/run/checkpoints/0000100.pt")


def test_cli_takes_hub_ids_offline(offline, tmp_path):
    """`dit sample --ckpt ORG/NAME` in a fresh process (environment read at run time); errors are one line."""
    run = [
        sys.executable,
        "-m",
        "dit.cli.main",
        "sample",
        "--num-sampling-steps",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    ok = subprocess.run(
        run + ["--ckpt", "org/tiny-dit", "--out", str(tmp_path / "a.npz"), "--class-labels", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        run + ["--ckpt", "org/nothing-here", "--out", str(tmp_path / "b.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "org/nothing-here is not in the Hugging Face cache" in bad.stderr
