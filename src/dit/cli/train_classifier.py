"""`dit train-classifier`: a small CNN on labelled images, for `dit eval --features classifier:PATH`."""

from __future__ import annotations

import argparse

from dit.config import ClassifierTrainConfig

_C = ClassifierTrainConfig()  # the flags' defaults, defined once in dit.config

HELP = "train a small image classifier whose features replace Inception's in `dit eval` (for small data such as digits)"
DESCRIPTION = (
    "DATA is an .npz (arr_0 (N, H, W, 3) uint8 images, arr_1 (N,) labels) or a folder with one sub-folder "
    "per class. A seeded fraction is held out and its accuracy reported. Writes OUT (.safetensors, "
    "self-describing) and a JSON beside it with the config and accuracies."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-path", required=True, help="labelled images: .npz with arr_0/arr_1 or a class-folder tree"
    )
    parser.add_argument("--out", required=True, help="output weights file, ending in .safetensors")
    parser.add_argument(
        "--image-size", type=int, default=None, help="side the classifier works at; when unset, the data's"
    )
    parser.add_argument(
        "--width", type=int, default=_C.width, help="channels of the first conv stage (the second has twice)"
    )
    parser.add_argument("--epochs", type=int, default=_C.epochs, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=_C.batch_size, help="images per optimisation step")
    parser.add_argument("--lr", type=float, default=_C.lr, help="peak AdamW learning rate (cosine decay to 0)")
    parser.add_argument(
        "--val-fraction", type=float, default=_C.val_fraction, help="fraction of the data held out for accuracy"
    )
    parser.add_argument("--seed", type=int, default=_C.seed, help="seed of the split, initialisation and batches")
    parser.add_argument("--device", default=None, help="torch device; when unset, cuda if available, else cpu")


def run(args: argparse.Namespace) -> int:
    from dit.evaluation.classifier import train_classifier

    cfg = ClassifierTrainConfig(
        data_path=args.data_path,
        out=args.out,
        image_size=args.image_size,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
    )
    result = train_classifier(cfg, progress=True)
    val = result["val_accuracy"]
    print(f"held-out accuracy {val:.4f} on {result['num_val']} images" if val is not None else "no held-out split")
    print(f"train accuracy {result['train_accuracy']:.4f} on {result['num_train']} images")
    print(f"wrote {result['path']}")
    return 0
