"""build_source / TrainingSource.prepare: a latent cache trains exactly like on-the-fly encoding."""

import pytest
import torch

from dit.data import build_source, extract_latents
from dit.data.latent_cache import check_header
from dit.errors import UserError
from dit.runtime.rng import FLIP, POSTERIOR, example_generators, rand_rows
from dit.vae import load_codec
from tests.helpers.data import TINY_SCALE, make_image_folder, save_tiny_vae

SIZE = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    codec = load_codec(str(save_tiny_vae(tmp / "vae")))
    data = make_image_folder(tmp / "data", classes=("a", "b", "c"), per_class=2, size=(13, 10))
    extract_latents(data, codec, SIZE, tmp / "cache", batch_size=4, shard_size=4, log=lambda *_: None)
    fly = build_source(data, SIZE, codec, num_classes=3)
    cached = build_source(tmp / "cache", SIZE, codec, num_classes=3)
    return tmp, codec, fly, cached


def _batch(source, indices):
    items, labels = zip(*(source.dataset[i] for i in indices))
    return torch.stack(items), torch.tensor(labels)


def _draws(seed, indices, epoch):
    """What the trainer does: per-example streams keyed by (seed, global index, epoch)."""
    keys = [epoch * 1_000_003 + i for i in indices]
    flip = rand_rows((len(keys),), example_generators(seed, keys, FLIP)) < 0.5  # (N,)
    return flip, example_generators(seed, keys, POSTERIOR)


def test_sources_describe_themselves(setup):
    tmp, codec, fly, cached = setup
    for s in (fly, cached):
        assert s.num_classes == 3 and s.class_names == ["a", "b", "c"] and s.latent_shape == (4, 4, 4)
        assert len(s.dataset) == 6 and s.header["vae"]["scale_factor"] == TINY_SCALE and s.flip
    assert (fly.kind, cached.kind) == ("images", "cache")
    assert fly.dataset[0][0].shape == (3, SIZE, SIZE) and cached.dataset[0][0].shape == (2, 2, 4, 4, 4)
    assert cached.header["cache"]["vae"]["id"] == codec.id


def test_cached_equals_on_the_fly_for_the_same_draws(setup):
    _, _, fly, cached = setup
    idx = [5, 0, 3, 2, 1, 4]
    flip, gens = _draws(seed=7, indices=idx, epoch=0)
    assert 0 < flip.sum() < len(idx)  # both branches exercised
    x_fly, y_fly = fly.prepare(*_batch(fly, idx), flip, gens)
    flip, gens = _draws(seed=7, indices=idx, epoch=0)  # fresh generators, same streams
    x_cache, y_cache = cached.prepare(*_batch(cached, idx), flip, gens)
    assert x_fly.shape == (6, 4, 4, 4) and x_fly.dtype == torch.float32
    assert torch.equal(y_fly, y_cache) and y_fly.tolist() == [2, 0, 1, 1, 0, 2]
    # Encoder batch composition differs (2N with mirrors vs N): fp32 round-off only.
    torch.testing.assert_close(x_cache, x_fly, rtol=0, atol=1e-5)
    # The flip really is the mirrored image's encoding, and the noise really is drawn.
    flip2, gens2 = _draws(seed=7, indices=idx, epoch=0)
    x_noflip, _ = cached.prepare(*_batch(cached, idx), torch.zeros(6, dtype=torch.bool), gens2)
    assert not torch.allclose(x_noflip[flip], x_cache[flip]) and torch.equal(x_noflip[~flip], x_cache[~flip])
    _, gens3 = _draws(seed=8, indices=idx, epoch=0)
    assert not torch.allclose(cached.prepare(*_batch(cached, idx), flip, gens3)[0], x_cache)


def _moments_over_epochs(source, seed, epochs, freeze_flip=False):
    idx = list(range(6)) * epochs
    keys = [e for e in range(epochs) for _ in range(6)]
    items, labels = _batch(source, idx)
    flip, gens = _draws(seed, [k * 6 + i for k, i in zip(keys, idx)], epoch=0)
    if freeze_flip:
        flip = torch.zeros_like(flip)
    x, _ = source.prepare(items, labels, flip, gens)  # (6 * epochs, C, h, w)
    x = x.reshape(epochs, 6, -1)  # (K, images, C*h*w)
    return x.mean(0), x.var(0), epochs


def test_cached_matches_on_the_fly_in_distribution(setup):
    """Independent seeds, random flips: per-element means agree within 5 standard errors and
    the average variance within 10%. A cache that froze the flip fails the same check."""
    _, _, fly, cached = setup
    m_f, v_f, k = _moments_over_epochs(fly, seed=1, epochs=400)
    m_c, v_c, _ = _moments_over_epochs(cached, seed=2, epochs=400)
    se = ((v_f + v_c) / k).sqrt()
    assert ((m_f - m_c).abs() / se).max() < 5
    assert abs(v_c.mean() / v_f.mean() - 1) < 0.1
    m_frozen, v_frozen, _ = _moments_over_epochs(cached, seed=2, epochs=400, freeze_flip=True)
    assert ((m_f - m_frozen).abs() / ((v_f + v_frozen) / k).sqrt()).max() > 5


def test_pixel_space_prepare_flips_only(tmp_path):
    data = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    src = build_source(data, SIZE, load_codec("none"))
    assert src.latent_shape == (3, SIZE, SIZE) and src.header["vae"]["id"] == "none"
    items, labels = _batch(src, [0, 1, 2])
    flip = torch.tensor([True, False, True])
    x, y = src.prepare(items, labels, flip, example_generators(0, [0, 1, 2], POSTERIOR))
    assert torch.equal(x[0], items[0].flip(-1)) and torch.equal(x[1], items[1]) and torch.equal(x[2], items[2].flip(-1))
    assert y.tolist() == [0, 0, 1]
    no_flip = build_source(data, SIZE, load_codec("none"), flip=False)
    assert torch.equal(no_flip.prepare(items, labels, flip, [])[0], items)  # flip=False ignores the mask


def test_unconditional_labels_are_zero(setup):
    tmp, codec, _, _ = setup
    src = build_source(tmp / "cache", SIZE, codec, unconditional=True)
    assert src.num_classes == 0 and src.class_names == []
    items, labels = _batch(src, [4, 5])
    assert labels.tolist() == [2, 2]
    assert src.prepare(items, labels, None, example_generators(0, [4, 5], POSTERIOR))[1].tolist() == [0, 0]


def test_cache_mismatches_are_user_errors(setup, tmp_path):
    tmp, codec, _, _ = setup
    other = load_codec(str(save_tiny_vae(tmp_path / "v", seed=5)))
    with pytest.raises(UserError, match=f"VAE id '{codec.id}' but this run asks for '{other.id}'"):
        build_source(tmp / "cache", SIZE, other)
    with pytest.raises(UserError, match="image size 8 but this run asks for 16"):
        build_source(tmp / "cache", 16, codec)
    with pytest.raises(UserError, match="--num-classes 4 disagrees .* 3 classes"):
        build_source(tmp / "cache", SIZE, codec, num_classes=4)
    header = {"vae": dict(codec.to_dict(), scale_factor=0.18215), "image_size": SIZE}
    with pytest.raises(UserError, match="scale factor 0.18215 but this run asks for 0.5"):
        check_header(header, codec, SIZE)
    unc = tmp_path / "unc"
    extract_latents(tmp / "data", codec, SIZE, unc, unconditional=True, log=lambda *_: None)
    with pytest.raises(UserError, match="without labels"):
        build_source(unc, SIZE, codec)
    assert build_source(unc, SIZE, codec, unconditional=True).num_classes == 0
