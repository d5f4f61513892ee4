"""`dit eval`: FID, sFID, Inception Score, precision and recall of samples against a reference."""

from __future__ import annotations

import argparse
import sys

from dit.config import EvalConfig

_E = EvalConfig()  # the flags' defaults: each setting is defined once, in dit.config.EvalConfig

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
    parser.add_argument("samples", metavar="SAMPLES", help="generated images: .npz or folder of images")
    parser.add_argument("reference", metavar="REFERENCE", help="reference images: .npz or folder of images")
    parser.add_argument(
        "--inception",
        metavar="PATH",
        default=None,
        help="FID Inception weights file; when unset, pt_inception-2015-12-05-6726825d.pth or "
        "inception-2015-12-05-tf-graph.pth (`dit convert-inception`) in the cache folder",
    )
    parser.add_argument(
        "--features",
        default=_E.features,
        help="feature network: 'inception' or 'classifier:PATH' (a `dit train-classifier` .safetensors)",
    )
    parser.add_argument("--out", metavar="JSON", default=None, help="result file; when unset, <SAMPLES>.eval.json")
    parser.add_argument(
        "--batch-size", type=int, default=_E.batch_size, help="images per forward pass of the feature network"
    )
    parser.add_argument("--device", default=None, help="torch device; when unset, cuda if available, else cpu")
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute reference features instead of using/writing the cache"
    )
    parser.add_argument(
        "--nearest-k", type=int, default=_E.nearest_k, help="k of the k-NN manifolds of precision/recall (ADM: 3)"
    )
    parser.add_argument(
        "--is-split-size",
        type=int,
        default=_E.is_split_size,
        help="Inception Score over consecutive chunks of this many samples, averaged; the last chunk "
        "is shorter when N is not a multiple (ADM's evaluator: 5000, so 50K samples give 10 splits)",
    )
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

    if args.is_splits is not None:
        raise UserError(
            "--is-splits (a number of equal splits) is not ADM's Inception Score, which uses consecutive "
            "chunks of 5,000 samples; use --is-split-size (default 5000)"
        )
    cfg = EvalConfig(
        samples=args.samples,
        reference=args.reference,
        features=args.features,
        inception=args.inception,
        batch_size=args.batch_size,
        device=args.device,
        cache=not args.no_cache,
        nearest_k=args.nearest_k,
        is_split_size=args.is_split_size,
    )
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
