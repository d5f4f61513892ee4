"""Loading never executes code: every torch.load in the source says weights_only=True (read from
the syntax tree), and a pickle whose __reduce__ writes a marker file is refused by every loader
we have — through the command line — while the marker stays absent."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import dit

from .helpers import Boom, assert_refused, malicious_pickle, train_args

pytestmark = pytest.mark.faults

SRC = Path(dit.__file__).resolve().parent


TORCH_LOADS = ("torch.load", "torch.serialization.load")
PICKLE_LOADS = ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load", "marshal.loads")


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(source: str, where: str = "<src>") -> tuple[list[str], list[str]]:
    """(torch.load call sites, unsafe call sites) of a module's source."""
    loads, unsafe = [], []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name, at = ast.unparse(node.func), f"{where}:{node.lineno}"
        if name in TORCH_LOADS:
            loads.append(at)
            if not _is_const(_kw(node, "weights_only"), True):
                unsafe.append(f"{at}: {name} without weights_only=True")
        elif name in PICKLE_LOADS or name in ("eval", "exec"):
            unsafe.append(f"{at}: {name}")
        elif name in ("np.load", "numpy.load") and not _is_const(_kw(node, "allow_pickle"), False):
            unsafe.append(f"{at}: {name} without allow_pickle=False")
    return loads, unsafe


def test_every_torch_load_in_the_source_is_weights_only():
    loads, unsafe = [], []
    for path in sorted(SRC.rglob("*.py")):
        found, bad = scan(path.read_text(), str(path.relative_to(SRC)))
        loads += found
        unsafe += bad
    assert not unsafe, unsafe
    assert len(loads) >= 3, loads  # it sees the loaders we know of (checkpoint, weights, Inception)


def test_the_scan_flags_unsafe_spellings():
    """The checker is not vacuous: each of these lines is reported."""
    code = (
        "import torch, pickle, numpy as np\n"
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "torch.serialization.load(p)\n"
        "np.load(p, allow_pickle=True)\n"
        "np.load(p)\n"
        "pickle.loads(b)\n"
        "torch.load(p, map_location='cpu', weights_only=True)\n"
    )
    loads, unsafe = scan(code)
    assert len(loads) == 4 and len(unsafe) == 6
    assert not any(":8:" in u for u in unsafe)  # the safe call is not flagged


@pytest.fixture
def evil(tmp_path):
    """(file factory, marker): the positive control shows each file really runs code when unpickled."""
    marker = tmp_path / "PWNED"

    def make(path: Path, fmt: str = "torch") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        malicious_pickle(path, marker, fmt)
        return path

    probe = make(tmp_path / "probe" / "probe.pt")
    torch.load(probe, weights_only=False)  # what an unsafe loader would do
    assert marker.exists(), "the malicious file does not run code; the test would prove nothing"
    marker.unlink()
    raw = make(tmp_path / "probe" / "raw.pkl", "raw")
    with open(raw, "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    return make, marker


@pytest.mark.parametrize("fmt", ["torch", "raw"])
def test_checkpoint_loaders_refuse_code(capsys, tmp_path, evil, data, fmt):
    make, marker = evil
    ckpt = make(tmp_path / "evil" / "0000005.pt", fmt)
    # training checkpoint load (dit.runtime.checkpoint.load_checkpoint)
    assert_refused(
        capsys, train_args(data, tmp_path / "run", "--max-steps", "6", "--resume", str(ckpt)), tmp_path, str(ckpt)
    )
    # --resume auto picks it up from the run folder
    run = tmp_path / "run_auto"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run / "checkpoints" / "0000005.pt")
    assert_refused(capsys, train_args(data, run, "--max-steps", "6", "--resume", "auto"), tmp_path, "0000005.pt")
    # official .pt / any weights file (dit.weights.formats: dit sample, dit convert)
    for argv in (
        ["sample", "--ckpt", ckpt, "--out", tmp_path / "s.npz", "--model", "DiT-S/8", "--image-size", "64"],
        ["convert", ckpt, tmp_path / "out.safetensors"],
    ):
        assert_refused(capsys, argv, tmp_path, str(ckpt))
    # FID Inception weights (dit eval --inception)
    npz = tmp_path / "imgs.npz"
    np.savez(npz, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    assert_refused(capsys, ["eval", npz, npz, "--inception", ckpt], tmp_path, str(ckpt))
    assert not marker.exists()


def test_diffusers_folder_with_a_pickled_bin_is_refused(capsys, tmp_path, evil):
    make, marker = evil
    folder = tmp_path / "dit_diffusers"
    make(folder / "diffusion_pytorch_model.bin")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "_class_name": "DiTTransformer2DModel",
                "num_attention_heads": 2,
                "attention_head_dim": 16,
                "in_channels": 4,
                "num_layers": 1,
                "patch_size": 2,
                "sample_size": 8,
                "num_embeds_ada_norm": 10,
            }
        )
    )
    assert_refused(capsys, ["convert", folder, tmp_path / "o.safetensors"], tmp_path, "diffusion_pytorch_model.bin")
    assert_refused(
        capsys, ["sample", "--ckpt", folder, "--out", tmp_path / "s.png"], tmp_path, "diffusion_pytorch_model.bin"
    )
    # a VAE folder whose weights are a pickle (diffusers reads it; it must be weights-only too)
    from tests.helpers.sample import save_vae8

    vae = save_vae8(tmp_path / "vae")
    (vae / "diffusion_pytorch_model.safetensors").unlink()
    make(vae / "diffusion_pytorch_model.bin")
    assert_refused(
        capsys,
        ["extract-latents", "--data-path", tmp_path, "--vae", vae, "--out", tmp_path / "cache", "--unconditional"],
        tmp_path,
        str(vae),
    )
    assert not marker.exists()


def test_npz_holding_a_pickle_is_refused(capsys, tmp_path, evil):
    _, marker = evil
    bad = tmp_path / "evil.npz"
    np.savez(bad, arr_0=np.array([Boom(marker)], dtype=object))
    with np.load(bad, allow_pickle=True) as f:  # positive control
        f["arr_0"]
    assert marker.exists()
    marker.unlink()
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    feats = "classifier:" + str(
        save_classifier(SmallClassifier(ClassifierArch(2, 8, width=4)), tmp_path / "c.safetensors")
    )
    good = tmp_path / "good.npz"
    np.savez(good, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    assert_refused(capsys, ["eval", bad, good, "--features", feats], tmp_path, str(bad))
    assert_refused(
        capsys, ["train-classifier", "--data-path", bad, "--out", tmp_path / "k.safetensors"], tmp_path, str(bad)
    )
    assert not marker.exists()


def test_safetensors_only_loaders_refuse_a_pickle(capsys, tmp_path, evil, data):
    """Files that must be safetensors (classifier weights, latent-cache shards) given a pickle."""
    make, marker = evil
    npz = tmp_path / "imgs.npz"
    np.savez(npz, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    clf = make(tmp_path / "evil" / "clf.safetensors")
    assert_refused(capsys, ["eval", npz, npz, "--features", f"classifier:{clf}"], tmp_path, str(clf))
    from dit.cli.main import main

    cache = tmp_path / "cache"
    assert (
        main(["extract-latents", "--data-path", str(data), "--vae", "none", "--image-size", "8", "--out", str(cache)])
        == 0
    )
    shard = sorted(cache.glob("shard_*.safetensors"))[0]
    make(shard)
    argv = train_args(cache, tmp_path / "run", "--max-steps", "1")
    assert_refused(capsys, argv, tmp_path / "evil", shard.name, "is damaged", "re-run the same dit extract-latents")
    assert not marker.exists()
    # what the message says to do works: the same command rewrites the shard, training runs
    assert (
        main(["extract-latents", "--data-path", str(data), "--vae", "none", "--image-size", "8", "--out", str(cache)])
        == 0
    )
    assert main(train_args(cache, tmp_path / "run2", "--max-steps", "1")) == 0
