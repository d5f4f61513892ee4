"""The configs of `dit eval`, `dit train-classifier` and the in-training sampling/evaluation hooks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from dit.config.base import DictMixin
from dit.config.fields import check_settings, setting
from dit.config.sample import SAMPLER_NAMES
from dit.errors import UserError


def parse_features(spec: str, flag: str = "--features") -> tuple[Literal["inception", "classifier"], str]:
    """``"inception"`` → ("inception", ""), ``"classifier:PATH"`` → ("classifier", PATH); a one-line error
    naming ``flag`` otherwise (the syntax only; files are checked where they are opened)."""
    kind, _, arg = spec.partition(":")
    if kind == "inception" and not arg:
        return "inception", ""
    if kind == "classifier" and arg:
        return "classifier", arg
    raise UserError(f"{flag} must be 'inception' or 'classifier:PATH', got {spec!r}")


def validate_features(spec: str, flag: str) -> None:
    """One-line error unless ``spec`` is ``inception`` or ``classifier:PATH``."""
    parse_features(spec, flag)


@dataclass
class EvalConfig(DictMixin):
    """What `dit eval` needs: the two image sets and the feature network (ADM's metrics)."""

    # The two image sets: `dit eval`'s positional arguments SAMPLES and REFERENCE
    samples: str = setting("", help="generated images: .npz or folder of images", cli=False)
    reference: str = setting("", help="reference images: .npz or folder of images", cli=False)
    # "inception" (the FID Inception-v3, weights from ``inception`` or the cache folder) or
    # "classifier:PATH" (a network made by `dit train-classifier`)
    features: str = setting(
        "inception", help="feature network: 'inception' or 'classifier:PATH' (a `dit train-classifier` .safetensors)"
    )
    inception: Optional[str] = setting(
        None,
        help="FID Inception weights file; when unset, pt_inception-2015-12-05-6726825d.pth or "
        "inception-2015-12-05-tf-graph.pth (`dit convert-inception`) in the cache folder",
        metavar="PATH",
    )
    batch_size: int = setting(64, help="images per forward pass of the feature network")
    device: Optional[str] = setting(None, help="torch device; when unset, cuda if available, else cpu")
    cache: bool = setting(True, help="use/write the reference features' cache (--no-cache recomputes them)")
    # k of the k-NN manifolds (ADM: 3) and the Inception Score's chunk size (ADM: consecutive
    # chunks of 5,000 samples, the last one shorter; 50K samples → 10 splits)
    nearest_k: int = setting(3, help="k of the k-NN manifolds of precision/recall (ADM: 3)")
    is_split_size: int = setting(
        5000,
        help="Inception Score over consecutive chunks of this many samples, averaged; the last chunk is shorter when "
        "N is not a multiple (ADM's evaluator: 5000, so 50K samples give 10 splits)",
    )

    def validate(self) -> "EvalConfig":
        """One-line errors for settings `dit eval` and ``evaluate()`` cannot run with; returns self."""
        if self.batch_size < 1 or self.nearest_k < 1 or self.is_split_size < 1:
            raise UserError("--batch-size, --nearest-k and --is-split-size must be positive")
        validate_features(self.features, "--features")
        return self


@dataclass
class ClassifierTrainConfig(DictMixin):
    """What `dit train-classifier` needs: labelled images in, a small CNN out (safetensors + JSON)."""

    data_path: str = setting("", help="labelled images: .npz with arr_0/arr_1 or a class-folder tree", required=True)
    out: str = setting("classifier.safetensors", help="output weights file, ending in .safetensors", required=True)
    image_size: Optional[int] = setting(None, help="side the classifier works at; when unset, the data's")
    width: int = setting(32, help="channels of the first conv stage (the second has twice)")
    epochs: int = setting(30, help="passes over the training split")
    batch_size: int = setting(64, help="images per optimisation step")
    lr: float = setting(2e-3, help="peak AdamW learning rate (cosine decay to 0)")
    val_fraction: float = setting(0.1, help="fraction of the data held out for accuracy")
    seed: int = setting(0, help="seed of the split, initialisation and batches")
    device: Optional[str] = setting(None, help="torch device; when unset, cuda if available, else cpu")

    def validate(self) -> "ClassifierTrainConfig":
        """One-line errors for settings `dit train-classifier` and ``train_classifier()`` cannot run with."""
        too_small = self.image_size is not None and self.image_size < 4
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1 or too_small:
            raise UserError("--epochs, --batch-size and --width must be positive and --image-size at least 4")
        if not str(self.out).endswith(".safetensors"):
            raise UserError(f"--out must end with .safetensors, got {self.out}")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a finite positive number, got {self.lr}")
        return self


GROUP = "in-training samples and evaluation (--sample-every, --eval-every)"


@dataclass
class TrainSamplingConfig(DictMixin):
    """The model's sampling defaults and the sampling and evaluation hooks of `dit train`.

    ``sampler`` and ``sample_steps`` (None: the objective's, :mod:`dit.sampling.defaults`) are recorded
    in every checkpoint as what `dit sample`, the Pipeline and `dit serve` draw it with by default.
    Grids (``--sample-every``) use them at ``sample_cfg_scale`` (4.0, the official sample.py
    default for pictures; 1 for a MeanFlow model with guidance in its weights); evaluation draws
    ``eval_samples`` class-balanced samples at ``eval_cfg_scale`` (1.0: unguided) and compares them with
    ``eval_ref`` (an ``.npz`` or image folder; default: the training images, centre-cropped) through
    ``eval_features`` (``inception`` or ``classifier:PATH``).
    """

    sampler: Optional[str] = setting(
        None,
        choices=SAMPLER_NAMES,
        help="the sampler of the grids and eval samples, recorded in the checkpoints as the model's default "
        "(default: the objective's: ddpm for gaussian, heun-x0 for --recipe fast, heun for v-prediction flow, "
        "meanflow)",
        group=GROUP,
    )
    sample_steps: Optional[int] = setting(
        None,
        help="sampler steps of the grid and eval samples, recorded in the checkpoints as the model's default "
        "(default: the sampler's: DDPM 250, heun-x0 10, Heun 25, MeanFlow 2)",
        flag="--num-sampling-steps",
        group=GROUP,
        bound=">0",
    )
    sample_cfg_scale: float = setting(4.0, help="guidance scale of the sample grids", group=GROUP)
    eval_samples: int = setting(1000, help="class-balanced samples per evaluation", group=GROUP, bound=">0")
    eval_ref: Optional[str] = setting(
        None, help="reference images (.npz or folder; default: the training images)", group=GROUP
    )
    eval_features: str = setting(
        "inception", help="inception (FID weights file needed) or classifier:PATH", group=GROUP
    )
    eval_cfg_scale: float = setting(1.0, help="guidance scale of the eval samples (1 = none)", group=GROUP)
    eval_batch_size: int = setting(64, help="images per forward pass of the evaluation", group=GROUP, bound=">0")
    inception: Optional[str] = setting(
        None, help="FID Inception weights file for --eval-features inception (default: cache folder)", group=GROUP
    )

    def validate(self) -> "TrainSamplingConfig":
        """One-line errors for hook settings (``training_callbacks`` calls it before training starts)."""
        bad_steps = self.sample_steps is not None and self.sample_steps < 1
        if bad_steps or self.eval_samples < 1 or self.eval_batch_size < 1:
            raise UserError("--num-sampling-steps, --eval-samples and --eval-batch-size must be positive")
        validate_features(self.eval_features, "--eval-features")
        check_settings(self)
        return self
