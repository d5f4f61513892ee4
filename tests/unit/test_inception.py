"""The FID Inception-v3 code with random weights: shapes, batching, resizing, file layout, loading.

The real pytorch-fid weights cannot be fetched here, so numbers against TF are not tested; the
layout test pins the state-dict keys/shapes that the file must match.
"""

import numpy as np
import pytest
import torch

from dit.errors import UserError
from dit.evaluation import inception
from dit.evaluation.features import FeatureExtractor, make_extractor


@pytest.fixture(scope="module")
def net():
    return inception.random_weights(seed=0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)


def test_outputs_shapes_and_finite(net, images):
    out = FeatureExtractor(net, "random").features(images, batch_size=2)
    assert out["pool"].shape == (2, 2048)
    assert out["spatial"].shape == (2, 17 * 17 * 7)
    assert out["logits"].shape == (2, 1008)
    for v in out.values():
        assert v.dtype == np.float32 and np.isfinite(v).all() and v.std() > 0


def test_batch_size_invariance(net, images):
    ext = FeatureExtractor(net, "random")
    a, b = ext.features(images, batch_size=2), ext.features(images, batch_size=1)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_spatial_is_first_7_channels_of_mixed_6d_1x1_branch_in_hwc_order(net, images):
    x = inception.preprocess(torch.from_numpy(images))
    captured = {}
    hook = net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    with torch.no_grad():
        out = net(torch.from_numpy(images))
    hook.remove()
    fmap = captured["map"]  # (N, 192, 17, 17)
    assert fmap.shape == (2, 192, 17, 17) and x.shape == (2, 3, 299, 299)
    expected = fmap[:, :7].permute(0, 2, 3, 1).reshape(2, -1)
    torch.testing.assert_close(out["spatial"], expected)


def test_logits_are_pool_times_fc_weight_without_bias(net, images):
    with torch.no_grad():
        net.fc.bias.fill_(5.0)  # a bias must not matter (ADM's softmax graph has none)
        out = net(torch.from_numpy(images))
        net.fc.bias.zero_()
    torch.testing.assert_close(out["logits"], out["pool"] @ net.fc.weight.T)


def _bilinear_reference(img: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize (align_corners=False), written out in numpy, (H, W) → (S, S)."""
    h, w = img.shape

    def coords(n_in):
        src = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        src = np.clip(src, 0, None)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = coords(h)
    x0, x1, fx = coords(w)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


def test_preprocess_resizes_bilinear_to_299_in_minus_one_one():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(1, 5, 7, 3), dtype=np.uint8)
    x = inception.preprocess(torch.from_numpy(img))  # (1, 3, 299, 299)
    assert x.shape == (1, 3, 299, 299)
    ref = _bilinear_reference(img[0, :, :, 1].astype(np.float64) / 255.0, 299) * 2 - 1
    np.testing.assert_allclose(x[0, 1].numpy(), ref, atol=1e-5)
    # A 299×299 input is only rescaled to [-1, 1], not resampled.
    big = rng.integers(0, 256, size=(1, 299, 299, 3), dtype=np.uint8)
    y = inception.preprocess(torch.from_numpy(big))
    torch.testing.assert_close(y, torch.from_numpy(big).permute(0, 3, 1, 2).float() / 255 * 2 - 1)


def test_constant_images_of_any_size_give_the_same_features(net):
    ext = FeatureExtractor(net, "random")
    a = ext.features(np.full((1, 8, 8, 3), 90, np.uint8))
    b = ext.features(np.full((1, 40, 24, 3), 90, np.uint8))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


# pytorch-fid's pt_inception-2015-12-05 file: torchvision Inception3(num_classes=1008,
# aux_logits=False) with the FID blocks. A few keys and shapes that pin the layout:
_EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6d.branch1x1.conv.weight": (192, 768, 1, 1),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def test_state_dict_layout_matches_pytorch_fid_file():
    sd = inception.FIDInceptionV3().state_dict()
    for k, shape in _EXPECTED_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    tops = sorted({k.split(".")[0] for k in sd})
    assert tops == sorted(
        ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "fc"]
        + [f"Mixed_{b}" for b in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    )
    # torchvision's Inception-v3 without the aux head has 23,834,568 parameters for 1000 classes.
    n_params = sum(v.numel() for k, v in sd.items() if not k.split(".")[-1].startswith(("running", "num_batches")))
    assert n_params == 23_834_568 + 8 * 2048 + 8


def test_load_from_file_round_trips_and_tolerates_old_batchnorm_keys(net, images, tmp_path):
    # Files saved by older torch lack num_batches_tracked; loading must not need it.
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / inception.WEIGHTS_FILENAME
    torch.save(state, path)
    loaded = inception.load_inception(path)
    with torch.no_grad():
        a, b = net(torch.from_numpy(images)), loaded(torch.from_numpy(images))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_cache_folder_is_searched(tmp_path, monkeypatch):
    (tmp_path / inception.WEIGHTS_FILENAME).write_bytes(b"")
    monkeypatch.setenv("DIT_CACHE", str(tmp_path))
    assert inception.find_weights() == tmp_path / inception.WEIGHTS_FILENAME


def test_missing_weights_say_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("DIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match=inception.WEIGHTS_FILENAME) as e:
        make_extractor("inception")
    assert str(tmp_path / "cache") in str(e.value) and inception.WEIGHTS_URL in str(e.value)
    with pytest.raises(UserError, match="not found"):
        inception.find_weights(tmp_path / "nope.pth")


def test_wrong_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="not the FID Inception"):
        inception.load_inception(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        inception.load_inception(tmp_path / "junk.pth")
