"""The FID Inception-v3 code with random weights: shapes, batching, TF1 resizing, file layout, loading.

The real weights are tested against the TF graph's TorchScript in
``tests/reference/test_inception_tf_graph.py``; the layout test here pins the state-dict
keys/shapes that pytorch-fid's file must match.
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


def _tf1_resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ``ResizeBilinear`` (align_corners=False, half_pixel_centers=False) written from its C++ definition.

    tensorflow/core/kernels/image/resize_bilinear_op.cc, legacy path, in float32 and plain loops:
    scale = in/out; in = out_index * scale; lower = max(floor(in), 0); upper = min(ceil(in), in - 1);
    lerp = in - floor(in); top = tl + (tr - tl) * x_lerp; bottom = bl + (br - bl) * x_lerp;
    out = top + (bottom - top) * y_lerp. ``img`` (H, W) float32 → (out_h, out_w) float32.
    """
    f32 = np.float32
    h, w = img.shape

    def weights(n_in, n_out):
        scale = f32(n_in) / f32(n_out)
        table = []
        for i in range(n_out):
            src = f32(i) * scale
            fl = np.floor(src)
            table.append((max(int(fl), 0), min(int(np.ceil(src)), n_in - 1), f32(src - fl)))
        return table

    ys, xs = weights(h, out_h), weights(w, out_w)
    out = np.empty((out_h, out_w), f32)
    for r, (y0, y1, yl) in enumerate(ys):
        for c, (x0, x1, xl) in enumerate(xs):
            top = f32(img[y0, x0] + (img[y0, x1] - img[y0, x0]) * xl)
            bottom = f32(img[y1, x0] + (img[y1, x1] - img[y1, x0]) * xl)
            out[r, c] = f32(top + (bottom - top) * yl)
    return out


@pytest.mark.parametrize("h,w", [(5, 7), (8, 8), (32, 20), (400, 333)])
def test_resize_is_tf1_legacy_bilinear(h, w):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, size=(h, w)).astype(np.float32)
    ours = inception.tf1_resize_bilinear(torch.from_numpy(img)[None, None], 299)[0, 0].numpy()
    ref = _tf1_resize_reference(img, 299, 299)
    # Same float32 operations in the same order: equal up to the last bit or two.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_resize_is_not_the_half_pixel_resize():
    # The legacy convention samples source pixel i*in/out; half-pixel centres (pytorch-fid, torch's
    # align_corners=False) sample (i+0.5)*in/out-0.5. On a ramp they differ by a quarter pixel.
    ramp = torch.arange(8, dtype=torch.float32).repeat(8, 1)[None, None]  # (1, 1, 8, 8), value = column
    ours = inception.tf1_resize_bilinear(ramp, 16)[0, 0, 0]
    torch.testing.assert_close(ours, torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7]))


def test_preprocess_is_tf_graph_resize_then_minus_128_over_128():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(1, 5, 7, 3), dtype=np.uint8)
    x = inception.preprocess(torch.from_numpy(img))  # (1, 3, 299, 299)
    assert x.shape == (1, 3, 299, 299)
    ref = (_tf1_resize_reference(img[0, :, :, 1].astype(np.float32), 299, 299) - 128) / 128
    np.testing.assert_allclose(x[0, 1].numpy(), ref, rtol=0, atol=1e-6)
    # A 299×299 input is only rescaled (ADM's graph: Sub 128, Mul 1/128), not resampled.
    big = rng.integers(0, 256, size=(1, 299, 299, 3), dtype=np.uint8)
    y = inception.preprocess(torch.from_numpy(big))
    torch.testing.assert_close(y, (torch.from_numpy(big).permute(0, 3, 1, 2).float() - 128) / 128, rtol=0, atol=0)
    assert y.min() >= -1 and y.max() <= 127 / 128


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


def test_weights_without_classifier_give_no_logits(net, images, tmp_path):
    # dit convert-inception output has no fc: pool and spatial as with it, no logits.
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "nofc.pth")
    loaded = inception.load_inception(tmp_path / "nofc.pth")
    with torch.no_grad():
        a, b = net(torch.from_numpy(images)), loaded(torch.from_numpy(images))
    assert set(b) == {"pool", "spatial"}
    torch.testing.assert_close(a["pool"], b["pool"])
    assert set(FeatureExtractor(loaded, "nofc").features(images)) == {"pool", "spatial"}


def test_converted_file_in_cache_folder_is_found(tmp_path, monkeypatch):
    (tmp_path / inception.CONVERTED_FILENAME).write_bytes(b"")
    monkeypatch.setenv("DIT_CACHE", str(tmp_path))
    assert inception.find_weights() == tmp_path / inception.CONVERTED_FILENAME


def test_wrong_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="not the FID Inception"):
        inception.load_inception(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        inception.load_inception(tmp_path / "junk.pth")
