"""`dit make-reference`: an ADM-style reference .npz (images + FID/sFID statistics) from any image set."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_fields
from dit.config.outputs import OutputPolicy

HELP = "write a reference .npz (images + mu, sigma, mu_s, sigma_s) that `dit eval` uses as ADM's reference batches"
DESCRIPTION = (
    "Compute the Inception (or classifier) statistics of IMAGES (an .npz with arr_0 (N, H, W, 3) uint8 or a folder "
    "of images) once and write OUT.npz in the format of ADM's reference batches: arr_0 the images (arr_1 labels "
    "when present), mu/sigma of the pool features, mu_s/sigma_s of the spatial features, plus dit_features naming "
    "the feature network, so `dit eval SAMPLES OUT.npz` uses these statistics only with that same network. "
    "Statistics over the whole dataset give a fixed reference even when the stored images are a subset."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", metavar="IMAGES", help="reference images: .npz or folder of images")
    parser.add_argument("out", metavar="OUT.npz", help="the reference file to write")
    parser.add_argument(
        "--inception",
        metavar="PATH",
        default=None,
        help="FID Inception weights file; when unset, the one in the cache folder",
    )
    parser.add_argument(
        "--features",
        default="inception",
        help="feature network: 'inception' or 'classifier:PATH' (a `dit train-classifier` .safetensors)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass of the feature network")
    parser.add_argument("--device", default=None, help="torch device; when unset, cuda if available, else cpu")
    add_fields(parser, OutputPolicy)


def run(args: argparse.Namespace) -> int:
    from dit.errors import UserError
    from dit.evaluation.evaluate import make_reference
    from dit.evaluation.features import make_extractor
    from dit.runtime.distributed import resolve_device
    from dit.runtime.outputs import refuse_existing

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    refuse_existing(args.out, args.overwrite, "OUT.npz")  # before the Inception weights are read
    extractor = make_extractor(args.features, args.inception, str(resolve_device(args.device)))
    summary = make_reference(args.images, args.out, extractor, args.batch_size, progress=True, overwrite=args.overwrite)
    print(f"wrote {summary['reference']}: {summary['num_images']} images, statistics of {summary['features']}")
    return 0
