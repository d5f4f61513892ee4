"""`dit.Pipeline`: the Python API draws exactly what `dit sample` draws, by class name or id, from
every format `dit sample` loads, and writes the same protocol card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dit
from dit.cli.main import main
from dit.data.class_names import imagenet_class_names
from dit.errors import UserError
from dit.runtime.checkpoint import ema_export_path

from tests.helpers.sample import official_dit_s8, read_npz, sample_argv, save_vae8, trained_run

PROVENANCE = ("time", "output")  # the only card fields allowed to differ between two draws


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("run"), steps=3)


@pytest.fixture(scope="module")
def pipe(ckpt):
    return dit.Pipeline.from_pretrained(ckpt, device="cpu")


def test_same_images_and_card_as_dit_sample(pipe, ckpt, tmp_path):
    out = tmp_path / "s.npz"
    argv = sample_argv(
        ckpt,
        out,
        "--class-labels",
        "2",
        "0",
        "1",
        "--num-samples",
        "5",
        "--cfg-scale",
        "2.5",
        "--seed",
        "11",
        "--sampler",
        "ddim",
        "--eta",
        "0.5",
        "--batch-size",
        "2",
        "--guidance-interval",
        "100",
        "900",
    )
    assert main(argv) == 0
    want, labels = read_npz(out)
    kwargs = dict(
        num_steps=3,
        cfg_scale=2.5,
        sampler="ddim",
        seed=11,
        guidance_interval=(100, 900),
        num_images=5,
        eta=0.5,
        batch_size=2,
    )
    classes = ["class2", 0, "CLASS1"]  # names (any case) and ids mix
    got = pipe(classes, output_type="np", **kwargs)
    np.testing.assert_array_equal(got, want)  # bit-identical pixels
    np.testing.assert_array_equal(labels, [2, 0, 1, 2, 0])
    card = json.loads(open(f"{out}.protocol.json").read())
    mine = pipe.protocol_card(classes, **kwargs, output=str(out))
    assert {k: v for k, v in mine.items() if k not in PROVENANCE} == {
        k: v for k, v in card.items() if k not in PROVENANCE
    }


def test_balanced_classes_by_default_like_dit_sample(pipe, ckpt, tmp_path):
    out = tmp_path / "b.npz"
    assert main(sample_argv(ckpt, out, "--num-samples", "4", "--cfg-scale", "4")) == 0
    np.testing.assert_array_equal(pipe(num_images=4, num_steps=3, output_type="np"), read_npz(out)[0])


def test_output_types_and_class_names(pipe):
    assert pipe.class_names == ["class0", "class1", "class2"]  # stored by training
    assert pipe.class_index("class1") == 1 and pipe.class_index(2) == 2
    arr = pipe(["class1", "class0"], num_steps=2, output_type="np")
    pil = pipe(["class1", "class0"], num_steps=2)
    pt = pipe(["class1", "class0"], num_steps=2, output_type="pt")
    assert arr.shape == (2, 8, 8, 3) and arr.dtype == np.uint8
    assert [im.size for im in pil] == [(8, 8), (8, 8)] and all(isinstance(im, Image.Image) for im in pil)
    np.testing.assert_array_equal(np.stack([np.asarray(im) for im in pil]), arr)
    assert pt.shape == (2, 3, 8, 8) and pt.dtype == torch.float32
    np.testing.assert_array_equal((pt * 255).round().byte().permute(0, 2, 3, 1).numpy(), arr)


def test_bad_class_and_output_type_are_user_errors(pipe):
    with pytest.raises(UserError, match="unknown class 'clas1'.*did you mean 'class1'"):
        pipe.class_index("clas1")
    with pytest.raises(UserError, match="outside 0..2"):
        pipe(classes=[3], num_steps=1)
    with pytest.raises(UserError, match="output_type"):
        pipe(classes=[0], num_steps=1, output_type="jpeg")
    with pytest.raises(UserError, match="unknown sampler"):
        pipe(classes=[0], num_steps=1, sampler="euler-magic")
    with pytest.raises(UserError, match="^num_steps must be >= 1, got 0$"):  # the keyword as typed, not the flag
        pipe(classes=[0], num_steps=0)


def test_callback_sees_every_step_and_can_abort(pipe):
    seen = []
    pipe([0, 1, 2], num_steps=3, batch_size=2, callback=lambda i, n, x0: seen.append((i, n, tuple(x0.shape))))
    # 2 batches (2 + 1 images) of 3 steps each, counted over both
    assert [s[:2] for s in seen] == [(i, 6) for i in range(6)]
    assert [s[2][0] for s in seen] == [2, 2, 2, 1, 1, 1] and seen[0][2][1:] == (3, 8, 8)

    class Stop(Exception):
        pass

    def stop(i, n, x0):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        pipe([0], num_steps=3, callback=stop)
    totals = set()
    pipe([0], callback=lambda i, n, x0: totals.add(n))  # default steps: dit sample's (DDPM 250 here)
    assert totals == {250}
    preview = pipe.decode(torch.zeros(1, 3, 8, 8), output_type="np")
    assert preview.shape == (1, 8, 8, 3) and int(preview[0, 0, 0, 0]) == 128  # x = 0 → mid grey


def test_safetensors_export_and_weights_choice(pipe, ckpt):
    st = dit.Pipeline.from_pretrained(ema_export_path(ckpt), device="cpu")
    a = pipe([0, 1], num_steps=2, output_type="np")
    np.testing.assert_array_equal(st([0, 1], num_steps=2, output_type="np"), a)
    assert st.class_names == pipe.class_names
    raw = dit.Pipeline.from_pretrained(ckpt, weights="model", device="cpu")
    assert not np.array_equal(raw([0, 1], num_steps=2, output_type="np"), a)  # 3 steps: EMA != model


@pytest.mark.parametrize("device", ["0", "gpu", "meta"])
def test_a_bad_device_is_one_user_error(ckpt, device):
    with pytest.raises(UserError, match="--device"):
        dit.Pipeline.from_pretrained(ckpt, device=device)


def test_to_sets_the_autocast_precision(pipe, ckpt):
    other = dit.Pipeline.from_pretrained(ckpt, device="cpu").to("cpu", torch.bfloat16)
    assert other.precision == "bf16"
    assert other.protocol_card([0], num_steps=1)["settings"]["precision"] == "bf16"
    with pytest.raises(UserError, match="dtype"):
        other.to("cpu", torch.int8)


def test_official_file_gets_imagenet_names(tmp_path):
    official_dit_s8(tmp_path / "DiT-S-8.pt")
    vae = save_vae8(tmp_path / "vae")
    pipe = dit.Pipeline.from_pretrained(
        tmp_path / "DiT-S-8.pt", device="cpu", model="DiT-S/8", image_size=64, vae=str(vae)
    )
    assert pipe.class_names == list(imagenet_class_names()) and pipe.class_names[207] == "golden retriever"
    assert pipe.class_index("Golden Retriever") == 207 and pipe.class_index("tench") == 0
    images = pipe(["golden retriever"], num_steps=1, output_type="np")
    assert images.shape == (1, 64, 64, 3)
