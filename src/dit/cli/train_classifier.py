"""`dit train-classifier`: a small CNN on labelled images, for `dit eval --features classifier:PATH`."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_fields, from_args, given
from dit.cli.run_config import check_required
from dit.config import ClassifierTrainConfig

HELP = "train a small image classifier whose features replace Inception's in `dit eval` (for small data such as digits)"
DESCRIPTION = (
    "DATA is an .npz (arr_0 (N, H, W, 3) uint8 images, arr_1 (N,) labels) or a folder with one sub-folder "
    "per class. A seeded fraction is held out and its accuracy reported. Writes OUT (.safetensors, "
    "self-describing) and a JSON beside it with the config and accuracies."
)


SECTIONS: dict[str, type] = {"classifier": ClassifierTrainConfig}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, ClassifierTrainConfig)


def run(args: argparse.Namespace) -> int:
    from dit.evaluation.classifier import train_classifier

    check_required(SECTIONS, {("classifier", name) for name in given(args)})
    cfg = from_args(ClassifierTrainConfig, args)
    result = train_classifier(cfg, progress=True)
    val = result["val_accuracy"]
    print(f"held-out accuracy {val:.4f} on {result['num_val']} images" if val is not None else "no held-out split")
    print(f"train accuracy {result['train_accuracy']:.4f} on {result['num_train']} images")
    print(f"wrote {result['path']}")
    return 0
