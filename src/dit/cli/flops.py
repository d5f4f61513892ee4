"""`dit flops`: parameters, tokens and forward Gflops per image of DiT models, beside the paper's."""

from __future__ import annotations

import argparse

HELP = "print parameters, tokens and forward Gflops per image of DiT models, beside the paper's Table 4"
DESCRIPTION = (
    "Counts the paper's way: multiply-accumulates of one forward pass for one image, attention "
    "matmuls included (torch's FlopCounterMode reports twice these). Inputs are latents of side "
    "image-size/8 with 4 channels, as with the SD VAE."
)
L8_NOTE = (
    "note: the paper prints DiT-L/8 as 5.73 Gflops; the architecture gives 5.01 by every count "
    "(the official code included), so 5.01 is shown as the paper's number."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # No `choices=` lists: they live in dit.models, which imports torch; run() validates instead.
    parser.add_argument(
        "--model", default="all", help="an official name (DiT-XL/2 … DiT-S/8), or 'all' for the 12 sizes"
    )
    parser.add_argument(
        "--image-size", type=int, default=256, help="image side in pixels (latent side = image-size / 8)"
    )
    parser.add_argument(
        "--block", default="adaln-zero", help="block design (paper Fig. 5): adaln-zero, adaln, cross-attn or in-context"
    )
    parser.add_argument("--num-classes", type=int, default=1000, help="number of classes (0 = unconditional)")


def run(args: argparse.Namespace) -> int:
    from dit.errors import UserError
    from dit.models.blocks import BLOCK_DESIGNS
    from dit.models.flops import flops_table, format_table
    from dit.models.registry import size_of

    if args.num_classes < 0:
        raise UserError(f"--num-classes must be >= 0 (0 = unconditional), got {args.num_classes}")
    if args.block not in BLOCK_DESIGNS:
        raise UserError(f"unknown --block {args.block!r}; choose one of {', '.join(BLOCK_DESIGNS)}")
    names = None if args.model == "all" else [args.model]
    if names:
        size_of(args.model)  # raises a UserError listing the valid names
    rows = flops_table(names, image_size=args.image_size, block=args.block, num_classes=args.num_classes)
    print(
        f"image {args.image_size}x{args.image_size}, block {args.block}, {args.num_classes} classes; Gflops = "
        f"MACs per image"
    )
    print(format_table(rows))
    if any(r.name == "DiT-L/8" and r.paper_gflops is not None for r in rows):
        print(L8_NOTE)
    return 0
