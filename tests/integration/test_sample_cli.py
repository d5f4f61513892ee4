"""`dit sample` end to end: our checkpoints, safetensors exports, official .pt files, grids, npz,
protocol cards, resume from shards and bad input."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dit.cli.main import main
from dit.config import GenerationRequest, ModelConfig
from dit.diffusion import create_diffusion
from dit import sampling as gen
from dit.evaluation.io import read_protocol_card
from dit.models import build_model
from dit.runtime.checkpoint import ema_export_path, load_checkpoint
from dit.vae import PixelCodec, load_codec

from tests.helpers.sample import official_dit_s8, read_npz, sample_argv, save_vae8

CARD_FIELDS = (
    "checkpoint",
    "model",
    "diffusion",
    "sampler",
    "num_sampling_steps",
    "cfg_scale",
    "guidance_channels",
    "guidance_interval",
    "precision",
    "vae",
    "num_samples",
    "seed",
    "class_labels",
    "batch_size",
)


def card_of(out) -> dict:
    return json.loads(open(f"{out}.protocol.json").read())


def test_png_grid_from_our_checkpoint_with_a_full_card(ckpt, tmp_path):
    out = tmp_path / "grid.png"
    assert (
        main(sample_argv(ckpt, out, "--num-samples", "6", "--cfg-scale", "2", "--guidance-interval", "0", "500")) == 0
    )
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * 10 + 2, 2 * 10 + 2, 3)  # 3 classes → 3 rows of 2 images of 8×8, padding 2
    card = card_of(out)
    s = card["settings"]
    for key in CARD_FIELDS:
        assert key in s, key
    assert s["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert s["checkpoint"]["weights"] == "ema" and s["checkpoint"]["format"] == "dit-train"
    assert s["model"] == load_checkpoint(ckpt)["config"]["model"]
    assert s["vae"]["id"] == "none" and s["vae"]["scale_factor"] == 1.0  # the VAE recorded by training
    assert (s["sampler"], s["num_sampling_steps"], s["cfg_scale"]) == ("ddpm", 3, 2.0)
    assert (s["guidance_channels"], s["guidance_interval"], s["guided"]) == ("all", [0, 500], True)
    assert s["class_labels"]["mode"] == "balanced" and s["num_samples"] == 6 and s["seed"] == 0
    for key in ("git", "dit_version", "time", "world_size", "pixel_conversion"):
        assert card[key], key
    assert not (tmp_path / "grid.png.shards").exists()  # merged and cleaned up


def test_npz_equals_an_independent_in_process_draw_and_weights_choice_matters(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    assert main(sample_argv(ckpt, out, "--num-samples", "5", "--batch-size", "2", "--seed", "3")) == 0
    images, labels = read_npz(out)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 0, 1]

    state = load_checkpoint(ckpt)  # independent loading path: the checkpoint dict by hand
    model = build_model(ModelConfig.from_dict(state["config"]["model"]))
    model.load_state_dict(state["ema"], strict=True)
    cfg = GenerationRequest(num_sampling_steps=3, seed=3)
    ref = gen.ImageSampler(model, create_diffusion(""), PixelCodec(), cfg).images(list(range(5)), labels)
    np.testing.assert_array_equal(images, ref)

    out_model = tmp_path / "m.npz"
    assert (
        main(
            sample_argv(ckpt, out_model, "--num-samples", "5", "--batch-size", "2", "--seed", "3", "--weights", "model")
        )
        == 0
    )
    assert not np.array_equal(read_npz(out_model)[0], images)  # trained weights ≠ (near-initial) EMA
    assert card_of(out_model)["settings"]["checkpoint"]["weights"] == "model"
    assert read_protocol_card(out)["settings"]["seed"] == 3  # `dit eval` finds the card


def test_png_folder_holds_the_npz_images_one_file_each(ckpt, tmp_path):
    npz = tmp_path / "s.npz"
    assert main(sample_argv(ckpt, npz, "--num-samples", "5", "--batch-size", "2", "--seed", "4")) == 0
    folder = tmp_path / "pngs"
    assert main(sample_argv(ckpt, f"{folder}/", "--num-samples", "5", "--batch-size", "2", "--seed", "4")) == 0
    images, labels = read_npz(npz)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:06d}_class{c}.png" for i, c in enumerate(labels)]  # only PNGs: what clean-fid reads
    for i, name in enumerate(names):
        np.testing.assert_array_equal(np.asarray(Image.open(folder / name)), images[i])
    card = read_protocol_card(folder)  # DIR.protocol.json, found by `dit eval DIR ...`
    assert card["settings"]["num_samples"] == 5 and card["settings"]["tf32"] is None  # CPU: TF32 does not apply
    assert not list(tmp_path.glob(".pngs.*"))  # the temporary folder was renamed into place
    # A folder holding images already is refused before sampling (mixing runs would spoil an FID).
    assert main(sample_argv(ckpt, f"{folder}/", "--num-samples", "5")) == 2


def test_safetensors_export_gives_the_same_file_as_the_checkpoint(ckpt, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(sample_argv(ckpt, a, "--num-samples", "3", "--class-labels", "2", "1", "2")) == 0
    assert main(sample_argv(ema_export_path(ckpt), b, "--num-samples", "3", "--class-labels", "2", "1", "2")) == 0
    assert read_npz(a)[0].tobytes() == read_npz(b)[0].tobytes()
    assert read_npz(b)[1].tolist() == [2, 1, 2]
    assert card_of(b)["settings"]["class_labels"] == {"mode": "given", "labels": [2, 1, 2]}


def test_latent_checkpoint_decodes_with_the_vae_it_was_trained_with(tmp_path):
    from tests.helpers.data import TINY_SCALE, save_tiny_vae

    from tests.helpers.train import make_image_folder, train_args

    vae = save_tiny_vae(tmp_path / "vae")  # downsampling 2: 8×8 images ↔ 4×4×4 latents
    run = tmp_path / "run"
    assert main(train_args(make_image_folder(tmp_path / "data"), run, "--vae", str(vae), "--max-steps", "1")) == 0
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    out = tmp_path / "lat.npz"
    assert main(sample_argv(ckpt, out, "--num-samples", "3")) == 0  # no --vae: the recorded one
    images, _ = read_npz(out)
    assert images.shape == (3, 8, 8, 3)
    s = card_of(out)["settings"]
    assert s["vae"]["id"] == load_codec(str(vae)).id and s["vae"]["scale_factor"] == TINY_SCALE
    assert s["latent_shape"] == [4, 4, 4] and s["clip_denoised"] is False


def test_batch_size_changes_at_most_rounding(ckpt, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(sample_argv(ckpt, a, "--num-samples", "6", "--batch-size", "1")) == 0
    assert main(sample_argv(ckpt, b, "--num-samples", "6", "--batch-size", "4")) == 0
    x, y = read_npz(a)[0].astype(int), read_npz(b)[0].astype(int)
    assert np.abs(x - y).max() <= 1  # same noise per index; only float summation order may differ
    assert (x != y).mean() < 0.01


def test_resume_redraws_only_missing_or_damaged_shards(ckpt, tmp_path):
    out = tmp_path / "r.npz"
    argv = sample_argv(ckpt, out, "--num-samples", "7", "--batch-size", "2", "--keep-shards")
    assert main(argv) == 0
    first = out.read_bytes()
    shards = sorted((tmp_path / "r.npz.shards").glob("*.npz"))
    assert [p.name for p in shards] == [
        "00000000-00000002.npz",
        "00000002-00000004.npz",
        "00000004-00000006.npz",
        "00000006-00000007.npz",
    ]
    shards[1].unlink()
    shards[3].write_bytes(shards[3].read_bytes()[:40])  # torn write from an older tool
    stamp = shards[0].stat().st_mtime_ns
    out.unlink()
    assert main(argv) == 0
    assert out.read_bytes() == first
    assert shards[0].stat().st_mtime_ns == stamp  # kept, not redrawn
    assert card_of(out)["shards"] == {"total": 4, "drawn_now": 2, "resumed": 2}


def test_resume_with_other_settings_is_refused(ckpt, tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main(sample_argv(ckpt, out, "--num-samples", "4", "--batch-size", "2", "--keep-shards")) == 0
    assert main(sample_argv(ckpt, out, "--num-samples", "4", "--batch-size", "2", "--seed", "9")) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "settings differ: seed" in err and "r.npz.shards" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--out-suffix-check"], None),
        (["--sampler", "euler-magic"], None),  # argparse: not one of the listed choices
        (["--class-labels", "7"], "outside 0..2"),
        (["--precision", "fp8"], None),
    ],
)
def test_bad_input_is_one_line_and_exit_2(ckpt, tmp_path, capsys, extra, message):
    if extra == ["--out-suffix-check"]:
        assert main(sample_argv(ckpt, tmp_path / "x.jpg")) == 2
        assert "give a .png" in capsys.readouterr().err
        return
    if message is None:  # argparse refuses it
        with pytest.raises(SystemExit) as e:
            main(sample_argv(ckpt, tmp_path / "x.png", *extra))
        assert e.value.code == 2
        return
    assert main(sample_argv(ckpt, tmp_path / "x.png", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_missing_checkpoint_is_a_user_error(tmp_path, capsys):
    assert main(sample_argv(tmp_path / "nope.pt", tmp_path / "x.png")) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------ official-format files
@pytest.fixture(scope="module")
def vae8(tmp_path_factory):
    return save_vae8(tmp_path_factory.mktemp("vae") / "vae8")


@pytest.fixture(scope="module")
def official_bare(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("official") / "DiT-S-8-64x64.pt"
    official_dit_s8(ckpt, "bare")
    return ckpt


def test_official_bare_state_dict_png_through_a_vae(vae8, official_bare, tmp_path):
    ckpt = official_bare
    out = tmp_path / "off.png"
    argv = sample_argv(
        ckpt,
        out,
        "--model",
        "DiT-S/8",
        "--image-size",
        "64",
        "--vae",
        str(vae8),
        "--class-labels",
        "3",
        "7",
        "--num-samples",
        "4",
        "--num-sampling-steps",
        "2",
        "--cfg-scale",
        "4",
        "--guidance-channels",
        "official",
    )
    assert main(argv) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)  # 2 classes × 2 samples of 64×64
    s = card_of(out)["settings"]
    assert s["checkpoint"]["format"] == "official" and s["model"]["name"] == "DiT-S/8"
    assert s["model"]["num_classes"] == 1000 and s["image_size"] == [64, 64] and s["latent_shape"] == [4, 8, 8]
    assert s["vae"]["id"].startswith("local:sha256:") and s["vae"]["scale_factor"] == 0.25  # from the VAE config
    assert (s["guidance_channels"], s["cfg_scale"]) == ("official", 4.0)


@pytest.mark.slow
def test_official_train_dict_npz_uses_ema_and_matches_the_latent_path(vae8, tmp_path):
    ckpt = tmp_path / "0000100.pt"
    ema = official_dit_s8(ckpt, "train")
    out = tmp_path / "off.npz"
    argv = sample_argv(
        ckpt,
        out,
        "--image-size",
        "64",
        "--vae",
        str(vae8),
        "--num-samples",
        "2",
        "--num-sampling-steps",
        "2",
        "--sampler",
        "ddim",
        "--cfg-scale",
        "1.5",
    )
    assert main(argv) == 0
    images, labels = read_npz(out)
    assert images.shape == (2, 64, 64, 3) and labels.tolist() == [0, 1]  # balanced over 1000 classes

    from dit.models import DiT_models

    model = DiT_models["DiT-S/8"](input_size=8, num_classes=1000)
    model.load_state_dict(ema, strict=True)
    codec = load_codec(str(vae8))
    cfg = GenerationRequest(sampler="ddim", num_sampling_steps=2, cfg_scale=1.5)
    s = gen.ImageSampler(model, create_diffusion(""), codec, cfg)
    latents = s.latents([0, 1], labels)
    with torch.no_grad():  # decode by hand: latent / scale factor through the diffusers VAE
        decoded = codec.vae.decode(latents / 0.25).sample.clamp(-1, 1)
    expected = np.clip(127.5 * decoded.numpy() + 128, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(images, expected)
    assert card_of(out)["settings"]["checkpoint"]["weights"] == "ema"


def test_official_file_that_does_not_fit_names_keys_and_flags(vae8, official_bare, tmp_path, capsys):
    assert (
        main(
            sample_argv(
                official_bare, tmp_path / "x.png", "--model", "DiT-B/8", "--image-size", "64", "--vae", str(vae8)
            )
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "mis-shaped" in err and "--model DiT-S/8" in err


def test_dit_eval_copies_the_card_of_dit_sample(ckpt, tmp_path):
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    torch.manual_seed(0)
    clf = save_classifier(
        SmallClassifier(ClassifierArch(num_classes=3, image_size=8, width=4, feature_dim=16)),
        tmp_path / "clf.safetensors",
    )
    samples, ref = tmp_path / "s.npz", tmp_path / "ref.npz"
    assert main(sample_argv(ckpt, samples, "--num-samples", "6", "--seed", "1")) == 0
    assert main(sample_argv(ckpt, ref, "--num-samples", "6", "--seed", "2")) == 0
    result_path = tmp_path / "r.json"
    assert main(["eval", str(samples), str(ref), "--features", f"classifier:{clf}", "--out", str(result_path)]) == 0
    result = json.loads(result_path.read_text())
    assert result["protocol"]["path"] == f"{samples}.protocol.json"
    assert result["protocol"]["settings"] == card_of(samples)["settings"]
    assert 0.0 <= result["class_accuracy"] <= 1.0  # labels arr_1 travelled with the samples


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: the EMA weights")]


def test_says_in_one_line_when_the_ema_is_still_mostly_initial_weights(ckpt, tmp_path, capsys):
    """2 steps of a constant 0.9999 EMA keep 99.98% of the initial weights: warn, naming --weights model."""
    assert main(sample_argv(ckpt, tmp_path / "a.npz", "--num-samples", "2")) == 0
    (line,) = _warnings(capsys.readouterr().err)
    assert "100%" in line and "--weights model" in line
    assert main(sample_argv(ema_export_path(ckpt), tmp_path / "b.npz", "--num-samples", "2")) == 0
    assert len(_warnings(capsys.readouterr().err)) == 1  # the safetensors export records it too
    assert main(sample_argv(ckpt, tmp_path / "c.npz", "--num-samples", "2", "--weights", "model")) == 0
    assert _warnings(capsys.readouterr().err) == []


def test_no_stale_ema_warning_for_a_short_run_ema(tmp_path, capsys):
    from tests.helpers.train import make_image_folder, train_args

    data = make_image_folder(tmp_path / "data")
    assert main(train_args(data, tmp_path / "run", "--max-steps", "2", "--ema-type", "halflife")) == 0
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1]
    capsys.readouterr()
    assert main(sample_argv(ckpt, tmp_path / "a.npz", "--num-samples", "2")) == 0
    assert _warnings(capsys.readouterr().err) == []


@pytest.mark.parametrize("updates, warns", [(6000, True), (7000, False)])  # 0.9999^6000 = 0.55, ^7000 = 0.50
def test_stale_ema_threshold_from_the_recorded_settings(updates, warns):
    meta = {"train": {"ema_decay": 0.9999, "global_batch_size": 256}, "ema_updates": updates}
    line = gen.stale_ema_warning(SimpleNamespace(weights="ema", meta=meta, step=updates), "x.pt")
    assert (line is not None) == warns
    assert (
        gen.stale_ema_warning(SimpleNamespace(weights="ema", meta={}, step=None), "official.pt") is None
    )  # nothing recorded
