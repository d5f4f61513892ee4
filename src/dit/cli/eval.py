"""`dit eval`: FID, sFID, Inception Score, precision and recall of samples against a reference."""

from __future__ import annotations

import argparse
import sys

from dit.cli.flags import add_fields, from_args
from dit.config import EvalConfig, OutputPolicy

HELP = "compute FID, sFID, IS, precision and recall of samples against a reference (ADM's definitions)"
DESCRIPTION = (
    "SAMPLES and REFERENCE are each an .npz (arr_0 (N, H, W, 3) uint8, optional arr_1 labels) or a "
    "folder of images. As ADM's evaluator (the one behind the DiT paper's numbers): when REFERENCE is an .npz "
    "that stores mu, sigma, mu_s, sigma_s (ADM's reference batches, or `dit make-reference` output) FID and "
    "sFID use those statistics; precision/recall use its images; the result's reference_statistics says which. "
    "Inception input is resized as the TF1 graph does (bilinear, legacy pixel centres) and scaled (x-128)/128. "
    "Features come from the FID Inception-v3 (pytorch-fid's pt_inception-2015-12-05-6726825d.pth or "
    "`dit convert-inception` output, from --inception or the cache folder $DIT_CACHE / ~/.cache/dit; never "
    "downloaded) or from a classifier made by `dit train-classifier`. Reference features are cached beside "
    "the reference. The samples' protocol card (<SAMPLES>.protocol.json) is copied into the result. A warning "
    "(console and JSON not_comparable_because) says when the settings cannot give numbers comparable with "
    "published ones (fewer than 50K samples, statistics recomputed from images, non-Inception features)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The two image sets are positional: inputs, not settings a flag changes
    parser.add_argument("samples", metavar="SAMPLES", help="generated images: .npz or folder of images")
    parser.add_argument("reference", metavar="REFERENCE", help="reference images: .npz or folder of images")
    add_fields(parser, EvalConfig)
    parser.add_argument(
        "--out",
        metavar="JSON",
        default=None,
        help="result file; when unset, <SAMPLES>.eval.json (replaced on each run: it follows from the inputs)",
    )
    add_fields(parser, OutputPolicy, notes={"overwrite": "applies to a --out you name"})
    # Other evaluators (torch-fidelity) take a number of equal splits; ADM chunks by size, so that
    # flag is refused with a pointer rather than silently computing another Inception Score.
    parser.add_argument("--is-splits", type=int, default=None, help=argparse.SUPPRESS)


def format_result(result: dict) -> str:
    """The headline numbers on a few lines."""
    lines = [
        f"{k:16s} {result[k]:.4f}" if result[k] is not None else f"{k:16s} n/a (no classifier in the weights)"
        for k in ("fid", "sfid", "inception_score", "precision", "recall")
    ]
    if "class_accuracy" in result:
        lines.append(f"{'class_accuracy':16s} {result['class_accuracy']:.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dit.errors import UserError
    from dit.evaluation.evaluate import evaluate
    from dit.evaluation.io import write_json
    from dit.runtime.outputs import refuse_existing

    if args.is_splits is not None:
        raise UserError(
            "--is-splits (a number of equal splits) is not ADM's Inception Score, which uses consecutive "
            "chunks of 5,000 samples; use --is-split-size (default 5000)"
        )
    cfg = from_args(EvalConfig, args, EvalConfig(samples=args.samples, reference=args.reference))
    if args.out:
        refuse_existing(args.out, args.overwrite, "--out")  # before the long part
    result = evaluate(cfg, progress=True)
    out = args.out or args.samples.rstrip("/") + ".eval.json"
    write_json(out, {**result, "config": cfg.to_dict()})
    print(format_result(result))
    if result["not_comparable_because"]:
        print(
            "warning: not comparable with published (ADM-evaluator) numbers: "
            + "; ".join(result["not_comparable_because"]),
            file=sys.stderr,
        )
    print(f"wrote {out}")
    return 0
