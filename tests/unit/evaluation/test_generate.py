"""The generation path: labels, chunking, per-index randomness, guidance wiring, precision, writers, card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dit.config import GenerationRequest, ModelConfig
from dit.diffusion import create_diffusion
from dit.diffusion import sample
from dit.errors import UserError
from dit import sampling as gen
from dit.sampling import card as protocol
from dit.sampling import writers
from dit.models import build_model
from dit.runtime import rng
from dit.vae import PixelCodec

TINY = dict(name=None, depth=1, hidden_size=32, num_heads=2, patch_size=2, input_size=8)


def tiny_model(in_channels: int = 3, num_classes: int = 3, seed: int = 0, dropout: float = 0.1):
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(**TINY, in_channels=in_channels, num_classes=num_classes, class_dropout_prob=dropout)
    )
    with torch.no_grad():  # adaLN-Zero starts as the identity; random outputs make the tests meaningful
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def make_sampler(model=None, **overrides) -> gen.ImageSampler:
    cfg = GenerationRequest(**{"sampler": "ddpm", "num_sampling_steps": 3, "cfg_scale": 2.0, "seed": 5, **overrides})
    return gen.ImageSampler(model or tiny_model(), create_diffusion(""), PixelCodec(), cfg)


# ------------------------------------------------------------------ labels and chunks
def test_labels_balanced_given_and_unconditional():
    assert gen.sample_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert gen.sample_labels(5, 10, (4, 7)).tolist() == [4, 7, 4, 7, 4]
    assert gen.sample_labels(4, 0) is None
    with pytest.raises(UserError, match="outside 0..9"):
        gen.sample_labels(2, 10, (3, 10))
    with pytest.raises(UserError, match="unconditional"):
        gen.sample_labels(2, 0, (1,))


@pytest.mark.parametrize("n,batch,world", [(10, 3, 1), (10, 3, 2), (7, 4, 3), (1, 5, 2)])
def test_chunks_partition_the_indices_over_ranks(n, batch, world):
    chunks = gen.chunk_ranges(n, batch)
    assert [i for c in chunks for i in c] == list(range(n))
    assert all(len(c) <= batch for c in chunks)
    per_rank = [gen.rank_chunks(chunks, r, world) for r in range(world)]
    flat = sorted(i for chunks_r in per_rank for c in chunks_r for i in c)
    assert flat == list(range(n))  # every index exactly once


# ------------------------------------------------------------------ per-index randomness
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m"])
def test_sample_i_does_not_depend_on_its_batch(sampler):
    s = make_sampler(sampler=sampler)
    labels = gen.sample_labels(5, 3)
    whole = s.latents(list(range(5)), labels)  # (5, 3, 8, 8)
    alone = torch.cat([s.latents([i], labels[i : i + 1]) for i in range(5)])
    tail = s.latents([3, 4], labels[3:5])
    torch.testing.assert_close(alone, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(tail, whole[3:], atol=1e-5, rtol=0)
    assert not torch.allclose(whole[0], whole[3])  # same class, other index: other noise


def test_initial_and_step_noise_come_from_the_per_index_streams():
    """An independent loop: x_T and the DDPM step noise drawn directly from rng's streams."""
    model = tiny_model()
    s = make_sampler(model, cfg_scale=1.0)
    idx, labels = [4, 9], np.array([1, 2])
    x_t = rng.randn_rows((2, 3, 8, 8), rng.example_generators(5, idx, rng.SAMPLE_INIT))
    ref = sample(
        create_diffusion(""),
        lambda x, t, y: model(x, t, y),
        (2, 3, 8, 8),
        sampler="ddpm",
        num_steps=3,
        noise=x_t,
        generator=rng.example_generators(5, idx, rng.SAMPLE_STEP),
        model_kwargs={"y": torch.tensor(labels)},
        clip_denoised=True,
    )
    torch.testing.assert_close(s.latents(idx, labels), ref, atol=0, rtol=0)


@pytest.mark.parametrize("channels", ["all", "official"])
def test_guidance_matches_the_models_own_forward_with_cfg(channels):
    """Our guided path vs DiT.forward_with_cfg (the official batched form), 4-channel latents, DDIM."""
    model = tiny_model(in_channels=4)
    cfg = GenerationRequest(sampler="ddim", num_sampling_steps=3, cfg_scale=3.0, guidance_channels=channels, seed=1)
    codec = PixelCodec()
    codec.latent_channels = 4  # latents() never decodes; only the latent shape matters here
    s = gen.ImageSampler(model, create_diffusion(""), codec, cfg)
    idx, labels = [0, 1, 2], np.array([0, 2, 1])
    null = torch.full((3,), model.num_classes)

    def official(x, t, y):
        out = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), 3.0, channels)
        return out[: x.shape[0]]

    x_t = rng.randn_rows((3, 4, 8, 8), rng.example_generators(1, idx, rng.SAMPLE_INIT))
    ref = sample(
        create_diffusion(""),
        official,
        (3, 4, 8, 8),
        sampler="ddim",
        num_steps=3,
        noise=x_t,
        model_kwargs={"y": torch.tensor(labels)},
        clip_denoised=True,
    )  # pixel codec: clipped x_0
    torch.testing.assert_close(s.latents(idx, labels), ref, atol=1e-5, rtol=0)
    assert s.settings()["guidance_channels"] == channels and s.settings()["guided"]


def test_guidance_interval_outside_all_steps_equals_no_guidance():
    a = make_sampler(sampler="ddim", cfg_scale=4.0, guidance_interval=(2000, 3000)).latents([0, 1], np.array([0, 1]))
    b = make_sampler(sampler="ddim", cfg_scale=1.0).latents([0, 1], np.array([0, 1]))
    c = make_sampler(sampler="ddim", cfg_scale=4.0).latents([0, 1], np.array([0, 1]))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_is_applied_and_close_to_fp32(precision):
    lab = np.array([0, 1])
    fp32 = make_sampler(sampler="ddim").latents([0, 1], lab)
    half = make_sampler(sampler="ddim", precision=precision).latents([0, 1], lab)
    assert half.dtype == torch.float32
    assert not torch.equal(fp32, half)  # reduced-precision matmuls really ran
    assert (fp32 - half).abs().max() < 0.1


def test_unconditional_model_and_refused_settings():
    s = make_sampler(tiny_model(num_classes=0), cfg_scale=1.0)
    assert s.images([0, 1], None).shape == (2, 8, 8, 3)
    with pytest.raises(UserError, match="class-conditional"):
        make_sampler(tiny_model(num_classes=0), cfg_scale=2.0)
    with pytest.raises(UserError, match="null class"):
        make_sampler(tiny_model(dropout=0.0), cfg_scale=2.0)
    with pytest.raises(UserError, match="unknown sampler"):
        make_sampler(sampler="euler-magic")
    with pytest.raises(UserError, match="precision"):
        make_sampler(precision="fp8")


def test_in_memory_generation_equals_chunkwise_images():
    s = make_sampler()
    labels = gen.sample_labels(5, 3)
    images = gen.generate_images(s, labels, 5, batch_size=2)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[2:4], s.images([2, 3], labels[2:4]))


# ------------------------------------------------------------------ writers
def test_to_uint8_is_the_official_rounding():
    """Official sample.py: uint8 = floor(clamp(127.5·x + 128, 0, 255)); bytes worked out by hand."""
    x = torch.tensor([-1.2, -1.0, -0.5, 0.0, 0.001, 0.2, 0.5, 1.0, 3.0]).reshape(1, 1, 3, 3).repeat(1, 3, 1, 1)
    # -1.2 → -25 → 0; -1 → 0.5 → 0; -0.5 → 64.25 → 64; 0 → 128; 0.001 → 128.13 → 128;
    # 0.2 → 153.5 → 153 (floor, not round); 0.5 → 191.75 → 191; 1 → 255.5 → 255; 3 → 510.5 → 255
    expected = np.array([0, 0, 64, 128, 128, 153, 191, 255, 255], dtype=np.uint8).reshape(1, 3, 3, 1).repeat(3, axis=3)
    got = writers.to_uint8(x).numpy()
    assert got.dtype == np.uint8 and got.shape == (1, 3, 3, 3)
    np.testing.assert_array_equal(got, expected)


def test_grid_rows_follow_classes_when_balanced():
    labels = [0, 1, 2, 0, 1, 2]  # i mod 3
    order, cols = writers.grid_layout(labels, 6)
    assert order == [0, 3, 1, 4, 2, 5] and cols == 2
    assert writers.grid_layout([0, 1, 2], 3) == ([0, 1, 2], 2)  # one per class: square grid
    assert writers.grid_layout([0, 0, 1], 3) == ([0, 1, 2], 2)  # unbalanced
    assert writers.grid_layout(None, 10) == (list(range(10)), 4)
    images = np.stack([np.full((2, 3, 3), k, np.uint8) for k in range(6)])  # image k has value k
    grid = writers.grid_image(images, labels, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == 3  # row 0: class 0 = samples 0, 3
    assert grid[4, 1, 0] == 1 and grid[7, 5, 0] == 5  # row 1: samples 1, 4; row 2: 2, 5
    assert grid[0, 0, 0] == 0 and grid[3, 1, 0] == 0  # padding


def test_npz_and_png_writers(tmp_path):
    from PIL import Image

    images = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    writers.write_samples(tmp_path / "s.npz", images, labels)
    with np.load(tmp_path / "s.npz") as f:
        np.testing.assert_array_equal(f["arr_0"], images)
        assert f["arr_1"].dtype == np.int64 and f["arr_1"].tolist() == [0, 1, 0, 1]
    writers.write_samples(tmp_path / "u.npz", images, None)
    with np.load(tmp_path / "u.npz") as f:
        assert f.files == ["arr_0"]
    writers.write_samples(tmp_path / "g.png", images, labels)
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    np.testing.assert_array_equal(grid, writers.grid_image(images, labels.tolist()))
    assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------ shards and card
def test_merge_refuses_a_damaged_shard(tmp_path):
    chunks = gen.chunk_ranges(4, 2)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    writers.write_npz(gen.shard_path(tmp_path, chunks[0]), images)
    gen.shard_path(tmp_path, chunks[1]).write_bytes(b"PK\x03\x04 truncated")
    assert gen.shard_complete(gen.shard_path(tmp_path, chunks[0]), chunks[0], (8, 8))
    assert not gen.shard_complete(gen.shard_path(tmp_path, chunks[1]), chunks[1], (8, 8))
    assert not gen.shard_complete(gen.shard_path(tmp_path, chunks[0]), chunks[0], (16, 16))
    with pytest.raises(UserError, match="missing or damaged"):
        gen.merge_shards(tmp_path, chunks, (8, 8))


def test_card_path_is_what_dit_eval_reads(tmp_path):
    from dit.evaluation.io import read_protocol_card

    out = tmp_path / "samples.npz"
    card = protocol.make_card({"seed": 3}, out, protocol.provenance())
    protocol.write_card(out, card)
    assert protocol.card_path(out).name == "samples.npz.protocol.json"
    read = read_protocol_card(out)
    assert read["settings"] == {"seed": 3} and read["git"] and read["dit_version"]
    assert json.loads(protocol.card_path(out).read_text())["format"] == protocol.CARD_FORMAT
    assert protocol.settings_mismatch({"a": (1, 2), "b": 1}, {"a": [1, 2], "b": 2}) == ["b"]


def test_checkpoint_hash_of_files_and_folders(tmp_path):
    import hashlib

    f = tmp_path / "w.pt"
    f.write_bytes(b"abc" * 1000)
    assert protocol.file_sha256(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
    folder = tmp_path / "pipe"
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text("{}")
    (folder / "model_index.json").write_text("{}")
    before = protocol.file_sha256(folder)
    (folder / "transformer" / "config.json").write_text("{ }")
    assert protocol.file_sha256(folder) != before
