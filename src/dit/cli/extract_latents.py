"""`dit extract-latents`: encode an image folder once into a resumable, sharded latent cache."""

from __future__ import annotations

from dit.cli.flags import add_fields
from dit.config.outputs import OutputPolicy

HELP = "encode an image folder (and its mirror images) once into a latent cache for training"
DESCRIPTION = (
    "Encodes every image of an ImageFolder tree and its horizontal mirror through the VAE and stores "
    "the posterior mean and std of both in safetensors shards plus a header (VAE id, scale factor, "
    "image size, class names). Training from the cache (dit train --data-path CACHE_DIR) draws a fresh "
    "posterior sample and mirror each step, so it equals on-the-fly encoding in distribution. "
    "Re-running the same command resumes (finished shards are skipped); under torchrun the ranks "
    "encode disjoint shards. Size: 16*C*h*w bytes per image in fp32 (64 KiB at 256x256), half in fp16."
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--data-path", required=True, help="image folder: one sub-folder per class (any layout with --unconditional)"
    )
    parser.add_argument(
        "--vae",
        default="ema",
        help="ema | mse (Stable Diffusion VAEs from the hub) or a "
        "folder saved by AutoencoderKL.save_pretrained ('none' makes a pixel cache)",
    )
    parser.add_argument("--image-size", type=int, default=256, help="side of the ADM centre crop in pixels")
    parser.add_argument("--out", required=True, help="cache folder to create or resume")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="images per encoder call (each also encodes its mirror, so the VAE sees twice this many)",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=1024,
        help="images per shard file (the unit of resumption and of the split across ranks)",
    )
    parser.add_argument(
        "--on-bad-image",
        choices=("skip", "fail"),
        default="skip",
        help="unreadable files: skip (counted and listed in the header) or fail naming the file",
    )
    parser.add_argument(
        "--dtype",
        choices=("fp32", "fp16"),
        default="fp32",
        help="storage precision of the posterior moments (the encoder always runs in fp32)",
    )
    parser.add_argument("--unconditional", action="store_true", help="no labels: take images from any layout")
    parser.add_argument("--num-classes", type=int, default=None, help="check the folder has this many classes")
    parser.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    add_fields(parser, OutputPolicy, notes={"overwrite": "re-running without it resumes an unfinished cache"})


def run(args) -> int:
    from dit.data.latent_cache import extract_latents
    from dit.runtime.distributed import cleanup, init_distributed
    from dit.vae import load_codec

    info = init_distributed(args.device)
    log = print if info.is_main else (lambda *a, **k: None)
    try:
        codec = load_codec(args.vae, device=info.device)
        header = extract_latents(
            args.data_path,
            codec,
            args.image_size,
            args.out,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            on_bad_image=args.on_bad_image,
            dtype=args.dtype,
            unconditional=args.unconditional,
            num_classes=args.num_classes,
            num_workers=args.num_workers,
            log=log,
            overwrite=args.overwrite,
        )
    finally:
        cleanup(info)
    log(
        f"latent cache {args.out}: {header['num_items']} images x 2 (mirror), latent shape "
        f"{tuple(header['latent_shape'])}, VAE {header['vae']['id']} (scale {header['vae']['scale_factor']}), "
        f"{len(header['bad_images'])} bad files skipped"
    )
    return 0
