"""`dit eval`: FID, sFID, Inception Score, precision and recall of samples against a reference."""

from __future__ import annotations

import argparse

HELP = "compute FID, sFID, IS, precision and recall of samples against a reference (ADM's definitions)"
DESCRIPTION = (
    "SAMPLES and REFERENCE are each an .npz (arr_0 (N, H, W, 3) uint8, optional arr_1 labels) or a "
    "folder of images. Features come from the FID Inception-v3 (weights file "
    "pt_inception-2015-12-05-6726825d.pth from pytorch-fid, read from --inception or the cache folder "
    "$DIT_CACHE / ~/.cache/dit; never downloaded) or from a classifier made by `dit train-classifier`. "
    "Reference features are cached beside the reference. The samples' protocol card "
    "(<SAMPLES>.protocol.json) is copied into the result."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", metavar="SAMPLES", help="generated images: .npz or folder of images")
    parser.add_argument("reference", metavar="REFERENCE", help="reference images: .npz or folder of images")
    parser.add_argument("--inception", metavar="PATH", default=None,
                        help="FID Inception weights file; when unset, pt_inception-2015-12-05-6726825d.pth in the cache folder")
    parser.add_argument("--features", default="inception",
                        help="feature network: 'inception' or 'classifier:PATH' (a `dit train-classifier` .safetensors)")
    parser.add_argument("--out", metavar="JSON", default=None, help="result file; when unset, <SAMPLES>.eval.json")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass of the feature network")
    parser.add_argument("--device", default=None, help="torch device; when unset, cuda if available, else cpu")
    parser.add_argument("--no-cache", action="store_true", help="recompute reference features instead of using/writing the cache")
    parser.add_argument("--nearest-k", type=int, default=3, help="k of the k-NN manifolds of precision/recall (ADM: 3)")
    parser.add_argument("--is-splits", type=int, default=10, help="number of Inception Score splits (ADM: 10 of 5000)")


def format_result(result: dict) -> str:
    """The headline numbers on a few lines."""
    lines = [f"{k:16s} {result[k]:.4f}" for k in ("fid", "sfid", "inception_score", "precision", "recall")]
    if "class_accuracy" in result:
        lines.append(f"{'class_accuracy':16s} {result['class_accuracy']:.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dit.config import EvalConfig
    from dit.errors import UserError
    from dit.evaluation.evaluate import evaluate
    from dit.evaluation.io import write_json

    if args.batch_size < 1 or args.nearest_k < 1 or args.is_splits < 1:
        raise UserError("--batch-size, --nearest-k and --is-splits must be positive")
    cfg = EvalConfig(samples=args.samples, reference=args.reference, features=args.features, inception=args.inception,
                     batch_size=args.batch_size, device=args.device, cache=not args.no_cache,
                     nearest_k=args.nearest_k, is_splits=args.is_splits)
    result = evaluate(cfg, progress=True)
    out = args.out or args.samples.rstrip("/") + ".eval.json"
    write_json(out, {**result, "config": cfg.to_dict()})
    print(format_result(result))
    print(f"wrote {out}")
    return 0
