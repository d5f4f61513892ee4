"""The latent cache: contents equal direct encoding (image and mirror), resume, rank split, errors."""

import json
import os

import pytest
import torch
from safetensors import safe_open

from dit.data import build_source
from dit.data import latent_cache as lc
from dit.data.image_folder import ImageFolder
from dit.data.latent_cache import HEADER_NAME, LatentCacheDataset, extract_latents, read_header
from dit.errors import UserError
from dit.vae import load_codec
from tests.helpers.data import TINY_SCALE, make_image_folder, save_tiny_vae

SIZE = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    codec = load_codec(str(save_tiny_vae(tmp / "vae")))
    data = make_image_folder(tmp / "data", classes=("a", "b"), per_class=3, size=(11, 9))  # 6 images
    return tmp, codec, data


def _extract(world_, out, **kw):
    tmp, codec, data = world_
    logs = []
    header = extract_latents(data, codec, SIZE, out, batch_size=2, shard_size=4, log=logs.append, **kw)
    return header, logs


def test_cache_equals_direct_encoding_of_image_and_mirror(world, tmp_path):
    tmp, codec, data = world
    header, _ = _extract(world, tmp_path / "c")
    assert header == read_header(tmp_path / "c")
    assert header["num_items"] == 6 and len(header["shards"]) == 2
    assert header["vae"]["id"] == codec.id and header["vae"]["scale_factor"] == TINY_SCALE
    assert header["image_size"] == SIZE and header["latent_shape"] == [4, 4, 4]
    assert header["class_names"] == ["a", "b"] and header["bad_images"] == {}
    ds, folder = LatentCacheDataset(tmp_path / "c"), ImageFolder(data, SIZE)
    assert len(ds) == 6
    images = torch.stack([folder[i][0] for i in range(6)])  # (6, 3, 8, 8)
    mean, std = codec.encode_moments(images)
    mean_m, std_m = codec.encode_moments(images.flip(-1))  # the mirror encoded on its own
    for i in range(6):
        item, label = ds[i]
        assert item.shape == (2, 2, 4, 4, 4) and label == folder.labels[i]
        for got, want in [(item[0, 0], mean[i]), (item[0, 1], std[i]), (item[1, 0], mean_m[i]), (item[1, 1], std_m[i])]:
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert not torch.allclose(ds[0][0][0], ds[0][0][1])  # the mirror really differs


def test_fp16_storage(world, tmp_path):
    _extract(world, tmp_path / "c32")
    header, _ = _extract(world, tmp_path / "c16", dtype="fp16")
    assert header["dtype"] == "fp16"
    a, b = LatentCacheDataset(tmp_path / "c32")[3][0], LatentCacheDataset(tmp_path / "c16")[3][0]
    assert b.dtype == torch.float16 and torch.equal(b, a.half())
    size32 = sum(os.path.getsize(tmp_path / "c32" / s["file"]) for s in header["shards"])
    size16 = sum(os.path.getsize(tmp_path / "c16" / s["file"]) for s in header["shards"])
    assert size16 < 0.6 * size32


def test_resume_skips_finished_shards(world, tmp_path):
    out = tmp_path / "c"
    _extract(world, out)
    before = LatentCacheDataset(out)
    first = [before[i][0] for i in range(6)]
    inode0 = os.stat(out / "shard_00000.safetensors").st_ino
    os.unlink(out / "shard_00001.safetensors")  # as if killed before the last shard
    os.unlink(out / HEADER_NAME)
    _, logs = _extract(world, out)
    assert "already done" in logs[0] and "encoded" in logs[1]
    assert os.stat(out / "shard_00000.safetensors").st_ino == inode0  # untouched
    after = LatentCacheDataset(out)
    assert all(torch.equal(after[i][0], first[i]) for i in range(6))
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_ranks_take_disjoint_shards(world, tmp_path, monkeypatch):
    """Rank r of W encodes shards r, r+W, ...; rank 0 (last here) writes the header."""
    single, _ = _extract(world, tmp_path / "one")
    out = tmp_path / "two"
    monkeypatch.setattr(lc, "_dist", lambda: (1, 2, lambda: None))
    with pytest.raises(UserError, match="missing after extraction"):  # rank 1 alone cannot finish the header
        _extract(world, out)
    assert sorted(os.listdir(out)) == ["shard_00001.safetensors"]
    monkeypatch.setattr(lc, "_dist", lambda: (0, 2, lambda: None))
    header, logs = _extract(world, out)
    assert len(logs) == 1  # rank 0 encoded shard 0 only
    assert {k: v for k, v in header.items() if k != "source"} == {k: v for k, v in single.items() if k != "source"}
    a, b = LatentCacheDataset(tmp_path / "one"), LatentCacheDataset(out)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(6))


def test_bad_images_are_skipped_and_listed(world, tmp_path):
    tmp, codec, _ = world
    data = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=3)
    (data / "b" / "1.png").write_bytes(b"garbage")
    header = extract_latents(data, codec, SIZE, tmp_path / "c", shard_size=4, log=lambda *_: None)
    assert header["num_items"] == 5 and list(header["bad_images"]) == [str(data / "b" / "1.png")]
    ds = LatentCacheDataset(tmp_path / "c")
    assert [ds[i][1] for i in range(5)] == [0, 0, 0, 1, 1]
    assert build_source(tmp_path / "c", SIZE, codec).bad_images == header["bad_images"]  # for the run log
    with safe_open(str(tmp_path / "c" / "shard_00001.safetensors"), "pt") as f:
        assert f.get_tensor("indices").tolist() == [5]  # position 4 (b/1.png) is missing
    with pytest.raises(UserError, match=r"b/1\.png"):
        extract_latents(data, codec, SIZE, tmp_path / "c2", on_bad_image="fail", log=lambda *_: None)


def test_mismatched_existing_cache_is_refused(world, tmp_path):
    tmp, codec, data = world
    _extract(world, tmp_path / "c")
    other = load_codec(str(save_tiny_vae(tmp_path / "v2", seed=3)))
    with pytest.raises(UserError, match=f"VAE id '{codec.id}' but this run asks for '{other.id}'"):
        extract_latents(data, other, SIZE, tmp_path / "c", log=lambda *_: None)
    with pytest.raises(UserError, match="image size 8 but this run asks for 16"):
        extract_latents(data, codec, 16, tmp_path / "c", log=lambda *_: None)
    os.unlink(tmp_path / "c" / HEADER_NAME)  # unfinished cache: the shards still say who made them
    with pytest.raises(UserError, match="shard_00000.*vae_id"):
        extract_latents(data, other, SIZE, tmp_path / "c", shard_size=4, log=lambda *_: None)


def test_header_format_checked(tmp_path):
    (tmp_path / HEADER_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError, match="not a version-1 dit latent cache"):
        read_header(tmp_path)
    (tmp_path / HEADER_NAME).write_text("{truncated")
    with pytest.raises(UserError, match="cannot read latent-cache header"):
        read_header(tmp_path)


def test_dataloader_workers_reopen_shards(world, tmp_path):
    _extract(world, tmp_path / "c")
    ds = LatentCacheDataset(tmp_path / "c")
    ds[0]  # open a handle in this process: it must not be pickled to the workers
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batches = list(loader)
    items = torch.cat([b[0] for b in batches])
    assert items.shape == (6, 2, 2, 4, 4, 4) and torch.cat([b[1] for b in batches]).tolist() == [0, 0, 0, 1, 1, 1]
    assert all(torch.equal(items[i], ds[i][0]) for i in range(6))


def test_resume_refuses_a_changed_folder(world, tmp_path):
    import shutil

    tmp, codec, data = world
    copy = shutil.copytree(data, tmp_path / "data")
    extract_latents(copy, codec, SIZE, tmp_path / "c", shard_size=4, log=lambda *_: None)
    shutil.copy(copy / "a" / "0.png", copy / "a" / "00.png")  # shifts every later position
    with pytest.raises(UserError, match="shard_00000.*folder.*new --out"):
        extract_latents(copy, codec, SIZE, tmp_path / "c", shard_size=4, log=lambda *_: None)
