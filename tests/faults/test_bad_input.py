"""Bad input through the real command line: exit status 2, one ``error:`` line that says what is
wrong and what to do, and nothing already written changed. One test per row of docs/faults.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dit.runtime.checkpoint import latest_checkpoint, load_checkpoint

from .helpers import assert_refused, make_image_folder, run_cli, save_png, train_args

pytestmark = pytest.mark.faults

FAST_SAMPLE = ["--num-sampling-steps", "2", "--no-progress", "--device", "cpu", "--num-samples", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 3-class image folder and a finished 1-step run of the tiny pixel-space model on it."""
    root = tmp_path_factory.mktemp("world")
    data = make_image_folder(root / "data")
    run = root / "run"
    from dit.cli.main import main

    assert main(train_args(data, run, "--max-steps", "1")) == 0
    return {"root": root, "data": data, "run": run, "ckpt": latest_checkpoint(run / "checkpoints")}


def _train(data, run, *extra):
    return train_args(data, run, "--max-steps", "1", *extra)


# --------------------------------------------------------------------------------------- data


def test_missing_data_folder(capsys, tmp_path):
    assert_refused(capsys, _train(tmp_path / "nope", tmp_path / "run"), tmp_path, "does not exist", "--data-path")
    assert_refused(
        capsys,
        ["extract-latents", "--data-path", tmp_path / "nope", "--vae", "none", "--out", tmp_path / "cache"],
        tmp_path,
        "does not exist",
    )


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    assert_refused(capsys, _train(tmp_path / "data", tmp_path / "run"), tmp_path, "no class sub-folders", "add images")
    assert_refused(capsys, _train(tmp_path / "data", tmp_path / "run2", "--unconditional"), tmp_path, "holds no images")


def test_class_folder_without_images(capsys, tmp_path):
    data = make_image_folder(tmp_path / "data")
    (data / "empty_class").mkdir()
    (data / "empty_class" / "notes.txt").write_text("not an image")
    assert_refused(capsys, _train(data, tmp_path / "run"), tmp_path, "empty_class", "holds no images")


def _bad_files(data: Path) -> dict[str, Path]:
    """A corrupt PNG, a truncated JPEG and a text file named .png, put into class0."""
    good = np.full((10, 10, 3), 90, np.uint8)
    jpg = save_png(data / "class0" / "cut.jpg", good)
    blob = jpg.read_bytes()
    jpg.write_bytes(blob[: len(blob) // 2])  # truncated
    corrupt = data / "class0" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    text = data / "class1" / "readme.png"
    text.write_text("this is not an image")
    return {"truncated": jpg, "corrupt": corrupt, "text": text}


@pytest.mark.parametrize("workers", ["0", "2"])
def test_bad_images_fail_names_the_file(capsys, tmp_path, workers):
    """Also from DataLoader workers, whose errors torch re-raises wrapped in their traceback."""
    data = make_image_folder(tmp_path / "data", per_class=2)
    bad = _bad_files(data)
    for name, path in bad.items():
        others = {p: p.read_bytes() for p in bad.values() if p != path}
        for p in others:
            p.unlink()
        argv = train_args(
            data,
            tmp_path / f"run_{name}",
            "--max-steps",
            "1",
            "--on-bad-image",
            "fail",
            "--num-workers",
            workers,
            batch=7,
        )
        line = assert_refused(capsys, argv, tmp_path, str(path), "--on-bad-image skip")  # one batch = all 7 files
        assert "cannot read image" in line
        for p, b in others.items():
            p.write_bytes(b)


def test_bad_images_skip_are_counted_and_listed_in_the_run_log(capsys, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=2)
    bad = _bad_files(data)
    run = tmp_path / "run"
    # 6 good + 3 bad files, batch 3: three steps visit all 9 positions of the epoch.
    code, _, err = run_cli(capsys, train_args(data, run, "--max-steps", "3", batch=3))
    assert code == 0, err
    log = (run / "log.txt").read_text()
    assert "skipped 3 unreadable image(s) so far" in log, log
    listed = (run / "bad_images.tsv").read_text()
    for path in bad.values():
        assert str(path) in log and str(path) in listed
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))["step"] == 3


def test_odd_image_modes_are_converted(capsys, tmp_path):
    """Grayscale, RGBA, palette and 16-bit files train like RGB ones (values checked in test_loaders)."""
    data = tmp_path / "data"
    g = np.random.default_rng(0)
    for k in range(2):
        save_png(data / "gray" / f"{k}.png", g.integers(0, 256, (12, 12), dtype=np.uint8), "L")
        save_png(data / "rgba" / f"{k}.png", g.integers(0, 256, (12, 12, 4), dtype=np.uint8), "RGBA")
        pal = save_png(data / "palette" / f"{k}.png", g.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        Image.open(pal).convert("P").save(pal)
        save_png(data / "deep" / f"{k}.png", g.integers(0, 65536, (12, 12), dtype=np.uint16))
    code, _, err = run_cli(capsys, train_args(data, tmp_path / "run", "--max-steps", "2"))
    assert code == 0, err
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["config"]["data"]["class_names"] == ["deep", "gray", "palette", "rgba"]
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_images_smaller_than_the_crop_are_upscaled(capsys, tmp_path):
    data = make_image_folder(tmp_path / "data", size=4)  # 4x4 files, 8x8 crop
    code, _, err = run_cli(capsys, train_args(data, tmp_path / "run", "--max-steps", "1"))
    assert code == 0, err


def test_num_classes_disagrees_with_the_folder(capsys, world, tmp_path):
    assert_refused(
        capsys,
        _train(world["data"], tmp_path / "run", "--num-classes", "5"),
        tmp_path,
        "--num-classes 5",
        "3 class folders",
        "pass --num-classes 3",
    )
    assert_refused(
        capsys,
        [
            "extract-latents",
            "--data-path",
            world["data"],
            "--vae",
            "none",
            "--image-size",
            "8",
            "--num-classes",
            "4",
            "--out",
            tmp_path / "cache",
        ],
        tmp_path,
        "--num-classes 4",
    )


# ------------------------------------------------------------------------------ configuration


def test_unknown_model_name(capsys, world, tmp_path):
    argv = [
        "train",
        "--data-path",
        world["data"],
        "--image-size",
        "8",
        "--vae",
        "none",
        "--model",
        "DiT-XXL/3",
        "--global-batch-size",
        "4",
        "--results-dir",
        tmp_path / "run",
        "--num-workers",
        "0",
        "--max-steps",
        "1",
    ]
    assert_refused(capsys, argv, tmp_path, "DiT-XXL/3", "DiT-XL/2")
    assert_refused(capsys, ["flops", "--model", "DiT-XXL/3"], tmp_path, "DiT-XXL/3")


def test_patch_size_does_not_divide_the_input(capsys, world, tmp_path):
    argv = train_args(world["data"], tmp_path / "run", "--max-steps", "1")
    argv[argv.index("--patch-size") + 1] = "3"
    assert_refused(capsys, argv, tmp_path, "patch", "8")


def test_batch_not_divisible_by_the_world_size():
    from dit.config import TrainConfig
    from dit.errors import UserError
    from dit.runtime.distributed import DistInfo
    from dit.train.trainer import Trainer

    info = DistInfo(rank=0, world_size=3, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(UserError, match="--global-batch-size 8 is not divisible by the 3 processes"):
        Trainer._check_config(TrainConfig(data_path="x", results_dir="y", global_batch_size=8, max_steps=1), info)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--sampler", "euler-magic"], ["invalid choice: 'euler-magic'", "ddpm", "dpm++2m"]),  # argparse lists them
        (["--cfg-scale", "-1"], ["--cfg-scale", ">= 0"]),
        (["--cfg-scale", "nan"], ["--cfg-scale"]),
        (["--num-sampling-steps", "0"], ["--num-sampling-steps"]),
        (["--guidance-interval", "900", "100"], ["guidance interval (900, 100) is empty", "low <= high"]),
        (["--eta", "-0.5"], ["--eta"]),
        (["--class-labels", "7"], ["class labels [7]", "0..2"]),
        (["--num-sampling-steps", "5000"], ["5000 steps", "1..1000"]),
        (["--cfg-scale", "inf"], ["--cfg-scale must be a finite number"]),
        (["--sampler", "ddim", "--eta", "5"], ["--eta must be in [0, 1]"]),
    ],
)
def test_invalid_sampler_or_guidance_settings(capsys, world, tmp_path, flags, words):
    out = tmp_path / "out.npz"
    np.savez(out, arr_0=np.zeros((1, 8, 8, 3), np.uint8))  # an earlier result that must survive, even --overwrite
    argv = ["sample", "--ckpt", world["ckpt"], "--out", out, "--overwrite", *FAST_SAMPLE, *flags]
    assert_refused(capsys, argv, tmp_path, *words)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--num-workers", "-1"], ["--num-workers -1", ">= 0"]),
        (["--warmup-steps", "-3", "--keep-last", "-1"], ["--warmup-steps -3, --keep-last -1"]),
        (["--ema-decay", "1.5"], ["--ema-decay must be in [0, 1]"]),
        (["--ema-decay", "nan"], ["--ema-decay must be in [0, 1]"]),
        (["--lr", "inf"], ["--lr must be a finite positive number"]),
        (["--class-dropout-prob", "1.5"], ["class_dropout_prob must be in [0, 1)"]),
    ],
)
def test_invalid_training_settings(capsys, world, tmp_path, flags, words):
    assert_refused(capsys, _train(world["data"], tmp_path / "run", *flags), tmp_path, *words)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_checkpoint_with_non_finite_weights_gives_no_black_images(capsys, world, tmp_path):
    """NaN weights would decode to all-black uint8 images: sampling stops with an error instead."""
    from dit.runtime.checkpoint import save_checkpoint

    state = load_checkpoint(world["ckpt"])
    state["ema"] = {
        k: v.float().fill_(float("nan")) if k.startswith("final_layer.linear") else v for k, v in state["ema"].items()
    }
    bad = save_checkpoint(state, tmp_path / "nan" / "0000001.pt")
    out = tmp_path / "out.npz"
    np.savez(out, arr_0=np.zeros((1, 8, 8, 3), np.uint8))
    assert_refused(
        capsys,
        ["sample", "--ckpt", bad, "--out", out, "--overwrite", *FAST_SAMPLE],
        tmp_path,
        "2 of 2 samples",
        "not finite",
    )


def test_results_folder_of_another_run_is_refused_without_resume(capsys, world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    assert_refused(capsys, _train(world["data"], run), tmp_path, "already holds a run", "--resume auto")


# -------------------------------------------------------------------------------------- files


def test_checkpoint_of_another_model_or_size(capsys, world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    argv = train_args(world["data"], run, "--max-steps", "2", "--resume", "auto")
    argv[argv.index("--hidden-size") + 1] = "48"
    assert_refused(capsys, argv, tmp_path, "checkpoint of another model", "hidden_size 32 vs 48", "--results-dir")
    argv = train_args(
        world["data"], tmp_path / "run2", "--max-steps", "2", "--resume", str(world["ckpt"]), "--image-size", "16"
    )
    assert_refused(capsys, argv, tmp_path, "another model", "input_size 8 vs 16")
    # an official-format file named as the wrong size
    assert_refused(
        capsys,
        ["sample", "--ckpt", world["ckpt"], "--model", "DiT-S/2", "--out", tmp_path / "x.npz", *FAST_SAMPLE],
        tmp_path,
        "does not fit the model",
    )


def test_truncated_checkpoint(capsys, world, tmp_path):
    blob = world["ckpt"].read_bytes()
    cut = tmp_path / "cut" / "0000009.pt"
    cut.parent.mkdir()
    cut.write_bytes(blob[: len(blob) // 2])
    assert_refused(
        capsys, ["sample", "--ckpt", cut, "--out", tmp_path / "x.npz", *FAST_SAMPLE], tmp_path, str(cut), "truncated"
    )
    assert_refused(capsys, ["convert", cut, tmp_path / "y.safetensors"], tmp_path, str(cut), "truncated")
    argv = train_args(world["data"], tmp_path / "run", "--max-steps", "2", "--resume", str(cut))
    assert_refused(capsys, argv, tmp_path, str(cut), "truncated")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert_refused(capsys, ["sample", "--ckpt", empty, "--out", tmp_path / "x.npz", *FAST_SAMPLE], tmp_path, str(empty))


@pytest.fixture(scope="module")
def cache(world):
    from dit.cli.main import main

    out = world["root"] / "cache8"
    assert (
        main(
            [
                "extract-latents",
                "--data-path",
                str(world["data"]),
                "--vae",
                "none",
                "--image-size",
                "8",
                "--out",
                str(out),
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    return out


def test_latent_cache_of_another_size_or_vae(capsys, cache, tmp_path):
    argv = train_args(cache, tmp_path / "run", "--max-steps", "1")
    argv[argv.index("--image-size") + 1] = "16"
    assert_refused(capsys, argv, cache.parent, "image size 8", "16", "re-run dit extract-latents")
    from tests.helpers.sample import save_vae8

    vae = save_vae8(tmp_path / "vae")
    argv = train_args(cache, tmp_path / "run2", "--max-steps", "1")
    argv[argv.index("--vae") + 1] = str(vae)
    assert_refused(capsys, argv, cache.parent, "VAE id 'none'", "local:sha256")


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"arr_0": np.zeros((2, 8, 8, 3), np.float32)}, ["uint8", "float32"]),
        ({"arr_0": np.zeros((2, 8, 8, 5), np.uint8)}, ["(N, H, W, 3)", "(2, 8, 8, 5)"]),
        ({"arr_0": np.zeros((8, 8), np.uint8)}, ["(N, H, W, 3)"]),
        ({"arr_0": np.zeros((0, 8, 8, 3), np.uint8)}, ["N > 0"]),
        ({"images": np.zeros((2, 8, 8, 3), np.uint8)}, ["no arr_0"]),
        ({"arr_0": np.zeros((2, 8, 8, 3), np.uint8), "arr_1": np.zeros(3, np.int64)}, ["arr_1", "(2,)"]),
    ],
    ids=["float", "channels", "2d", "empty", "no-arr_0", "labels"],
)
def test_npz_of_the_wrong_shape_or_dtype(capsys, tmp_path, arrays, words):
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    features = "classifier:" + str(
        save_classifier(SmallClassifier(ClassifierArch(2, 8, width=4)), tmp_path / "c.safetensors")
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    good = tmp_path / "ref.npz"
    np.savez(good, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    assert_refused(capsys, ["eval", bad, good, "--features", features], tmp_path, str(bad), *words)
    assert_refused(capsys, ["eval", good, bad, "--features", features, "--no-cache"], tmp_path, str(bad), *words)


def test_missing_inception_file(capsys, tmp_path, monkeypatch):
    good = tmp_path / "s.npz"
    np.savez(good, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    assert_refused(
        capsys, ["eval", good, good, "--inception", tmp_path / "missing.pth"], tmp_path, "missing.pth", "not found"
    )
    monkeypatch.setenv("DIT_CACHE", str(tmp_path / "cache"))
    assert_refused(capsys, ["eval", good, good], tmp_path, "FID Inception weights not found", "--inception PATH")
    assert not any(tmp_path.glob("*.eval.json"))


def test_missing_inception_file_stops_training_before_the_first_step(capsys, world, tmp_path, monkeypatch):
    monkeypatch.setenv("DIT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert_refused(capsys, _train(world["data"], run, "--eval-every", "1"), tmp_path, "FID Inception weights not found")
    assert latest_checkpoint(run / "checkpoints") is None  # no hour of training lost to a late failure


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "device, words",
    [("cuda", ["no CUDA device", "--device cpu"]), ("banana", ["not a device"])],
    ids=["gpu-absent", "unknown"],
)
def test_device_that_is_not_there(capsys, world, tmp_path, device, words):
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    clf = save_classifier(SmallClassifier(ClassifierArch(3, 8, width=4)), tmp_path / "c.safetensors")
    npz = tmp_path / "s.npz"
    np.savez(npz, arr_0=np.zeros((4, 8, 8, 3), np.uint8), arr_1=np.arange(4) % 3)
    for argv in (
        _train(world["data"], tmp_path / "run", "--device", device),
        ["sample", "--ckpt", world["ckpt"], "--out", tmp_path / "x.npz", *FAST_SAMPLE[:-4], "--device", device],
        ["eval", npz, npz, "--features", f"classifier:{clf}", "--device", device],
        ["train-classifier", "--data-path", npz, "--out", tmp_path / "k.safetensors", "--device", device],
        [
            "extract-latents",
            "--data-path",
            world["data"],
            "--vae",
            "none",
            "--out",
            tmp_path / "cache",
            "--device",
            device,
        ],
    ):
        assert_refused(capsys, argv, tmp_path, f"--device {device!r}", *words)


def test_outputs_that_exist_are_not_replaced(capsys, world, cache, tmp_path):
    """dit convert refuses an existing DST without --overwrite; extract-latents refuses to add
    shards of another size or dtype to an existing cache (re-running the same command resumes)."""
    dst = tmp_path / "w.safetensors"
    dst.write_bytes(b"an earlier export")
    assert_refused(capsys, ["convert", world["ckpt"], dst], tmp_path, "exists", "--overwrite")
    for flags, words in (
        (["--image-size", "16"], ["image size 8", "16"]),
        (["--image-size", "8", "--dtype", "fp16"], ["fp16"]),
    ):
        assert_refused(
            capsys,
            ["extract-latents", "--data-path", world["data"], "--vae", "none", "--out", cache, *flags],
            cache,
            *words,
        )


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["convert", "{ckpt}", "{tmp}/o.safetensors", "--image-size", "-8"],
            ["input size -8x-8", "must all be positive"],
        ),
        (
            [
                "extract-latents",
                "--data-path",
                "{data}",
                "--vae",
                "none",
                "--image-size",
                "8",
                "--out",
                "{tmp}/c",
                "--num-workers",
                "-1",
            ],
            ["--num-workers must be >= 0"],
        ),
        (["eval", "{tmp}/s.npz", "{tmp}/s.npz", "--batch-size", "0"], ["--batch-size"]),
    ],
    ids=["convert-size", "extract-workers", "eval-batch"],
)
def test_invalid_numbers_in_other_commands(capsys, world, tmp_path, argv, words):
    np.savez(tmp_path / "s.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    fill = {"ckpt": world["ckpt"], "tmp": tmp_path, "data": world["data"]}
    assert_refused(capsys, [a.format(**fill) for a in argv], tmp_path, *words)
