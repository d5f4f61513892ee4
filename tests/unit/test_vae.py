"""dit.vae against diffusers' own AutoencoderKL (a tiny random one saved with save_pretrained)."""

import pytest
import torch

from dit.errors import UserError
from dit.vae import HUB_IDS, load_codec
from tests.helpers.data import TINY_SCALE, save_tiny_vae


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    return save_tiny_vae(tmp_path_factory.mktemp("vae") / "tiny")


@pytest.fixture(scope="module")
def codec(vae_dir):
    return load_codec(str(vae_dir))


def _images(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1  # (N, 3, H, W) in [-1, 1]


def test_attributes_come_from_the_config(codec):
    assert codec.scale_factor == TINY_SCALE
    assert codec.latent_channels == 4 and codec.downsample == 2
    assert codec.latent_shape(16) == (4, 8, 8)
    assert codec.latent_shape((16, 24)) == (4, 8, 12)
    d = codec.to_dict()
    assert d["scale_factor"] == TINY_SCALE and d["id"] == codec.id and d["id"].startswith("local:sha256:")


def test_other_scale_factor_is_read(tmp_path):
    assert load_codec(str(save_tiny_vae(tmp_path / "v", scaling_factor=0.25))).scale_factor == 0.25


def test_moments_match_diffusers_posterior(codec, vae_dir):
    from diffusers import AutoencoderKL

    x = _images()
    mean, std = codec.encode_moments(x)
    assert mean.shape == std.shape == (3, 4, 8, 8)
    ref = AutoencoderKL.from_pretrained(vae_dir).eval()
    with torch.no_grad():
        post = ref.encode(x).latent_dist
        # A second, hand-written path: encoder → quant_conv → (mean, clamped logvar).
        m2, logvar = ref.quant_conv(ref.encoder(x)).chunk(2, dim=1)
    torch.testing.assert_close(mean, post.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(std, post.std, rtol=0, atol=1e-6)
    torch.testing.assert_close(mean, m2, rtol=0, atol=1e-6)
    torch.testing.assert_close(std, torch.exp(0.5 * logvar.clamp(-30, 20)), rtol=1e-6, atol=1e-7)
    assert std.std() > 0.01  # the posterior really is stochastic in this test


def test_sample_and_decode(codec, vae_dir):
    from diffusers import AutoencoderKL

    mean, std = codec.encode_moments(_images())
    noise = torch.randn_like(mean)
    z = codec.sample(mean, std, noise)
    torch.testing.assert_close(z, (mean + std * noise) * TINY_SCALE)
    out = codec.decode(z)
    assert out.shape == (3, 3, 16, 16) and out.min() >= -1 and out.max() <= 1
    ref = AutoencoderKL.from_pretrained(vae_dir).eval()
    with torch.no_grad():
        expect = ref.decode(z / TINY_SCALE).sample.clamp(-1, 1)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-5)


def test_pixel_codec_is_identity():
    codec = load_codec("none")
    assert (codec.id, codec.scale_factor, codec.latent_channels, codec.downsample) == ("none", 1.0, 3, 1)
    x = _images()
    mean, std = codec.encode_moments(x)
    assert torch.equal(mean, x) and torch.equal(std, torch.zeros_like(x))
    assert torch.equal(codec.sample(mean, std, torch.randn_like(x)), x)
    assert torch.equal(codec.decode(x), x)
    assert codec.latent_shape(8) == (3, 8, 8)


def test_id_follows_weights_not_location(vae_dir, tmp_path):
    import shutil

    moved = shutil.copytree(vae_dir, tmp_path / "elsewhere")
    assert load_codec(str(moved)).id == load_codec(str(vae_dir)).id
    assert load_codec(str(save_tiny_vae(tmp_path / "other", seed=1))).id != load_codec(str(vae_dir)).id


def test_bad_specs_raise_user_errors(tmp_path, monkeypatch, codec):
    with pytest.raises(UserError, match="neither none/ema/mse nor a folder"):
        load_codec(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_codec(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not a positive multiple"):
        codec.latent_shape(15)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(UserError, match=HUB_IDS["ema"].replace("/", ".") + ".*--vae PATH"):
        load_codec("ema")
