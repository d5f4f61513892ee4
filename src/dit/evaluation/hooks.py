"""`dit train`'s ``--sample-every`` and ``--eval-every`` hooks, on the one generation path.

Both run on every rank with the trainer's EMA model: ranks split the samples exactly as
``dit sample`` does (chunks of global indices, per-index noise), rank 0 gathers them.

* Grid (every ``sample_every`` steps): up to 8 classes × 4 samples (16 for unconditional models)
  → ``<run>/samples/<step>.png`` with its protocol card beside it.
* Metrics (every ``eval_every`` steps): ``eval_samples`` class-balanced samples → FID, sFID, IS,
  precision, recall (+ class accuracy with a classifier) against the reference, via
  :func:`dit.evaluation.evaluate.compute_metrics` (what ``dit eval`` computes). Logged on the
  console and ``log.txt``, as ``eval/<metric>`` scalars in the run's TensorBoard folder (beside
  the loss) and as rows of ``<run>/eval_metrics.csv``; the full result goes to
  ``<run>/eval/<step>.json``. Without ``eval_ref`` the reference is the training images
  (centre-cropped as in training), written once to ``<run>/eval/reference.npz``.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from dit.config import GenerationRequest, TrainConfig, TrainSamplingConfig
from dit.errors import UserError
from dit import sampling as gen
from dit.sampling import card as protocol
from dit.evaluation.evaluate import comparability_notes, compute_metrics, load_reference
from dit.evaluation.features import FeatureExtractor, make_extractor
from dit.evaluation.inception import find_weights
from dit.evaluation.io import write_json
from dit.sampling.writers import write_npz, write_samples
from dit.runtime.logging import tensorboard_writer

GRID_CLASSES = 8
GRID_PER_CLASS = 4
GRID_UNCONDITIONAL = 16
MAX_REFERENCE = 50_000
SCALARS = ("fid", "sfid", "inception_score", "precision", "recall", "class_accuracy")


def _sampler(trainer, ema_model, cfg_scale: float, seed: int) -> gen.ImageSampler:
    """The trainer's EMA model, diffusion and codec as an :class:`ImageSampler` (fp32) with the sampler and steps
    its checkpoints record (``trainer.sampling_defaults``), at ``cfg_scale`` unless they record the guidance."""
    d = trainer.sampling_defaults
    scale = cfg_scale if d.cfg_scale is None else d.cfg_scale
    scale = scale if trainer.source.num_classes and trainer.model_cfg.class_dropout_prob > 0 else 1.0
    request = GenerationRequest(cfg_scale=scale, seed=seed)
    return gen.ImageSampler(ema_model, trainer.diffusion, trainer.source.codec, request, trainer.device, d)


def _card(trainer, sampler: gen.ImageSampler, step: int, n: int, class_labels, out: Path) -> dict:
    checkpoint = {"run": str(trainer.run_dir), "step": int(step), "weights": "ema (in memory)"}
    settings = protocol.card_settings(checkpoint, trainer.model_cfg, trainer.diffusion_cfg, sampler, n, class_labels)
    return protocol.make_card(settings, out, protocol.provenance(trainer.info.world_size, str(trainer.device)))


class SampleGridHook:
    """A training callback (``dit.train.callbacks.TrainCallback``): a PNG grid of the EMA model.

    Written to ``<run>/samples/<step>.png``.
    """

    name = "sample-grid"

    def __init__(self, scfg: TrainSamplingConfig, seed: int, every: int = 0):
        self.scfg, self.seed, self.every = scfg, seed, every

    def __call__(self, step: int, ema_model, trainer) -> None:
        sampler = _sampler(trainer, ema_model, self.scfg.sample_cfg_scale, self.seed)
        if sampler.num_classes:
            class_labels = tuple(range(min(GRID_CLASSES, sampler.num_classes)))
            n = len(class_labels) * GRID_PER_CLASS
        else:
            class_labels, n = None, GRID_UNCONDITIONAL
        labels = gen.sample_labels(n, sampler.num_classes, class_labels)
        images = gen.generate_images(sampler, labels, n, batch_size=n, info=trainer.info)
        if images is not None:  # rank 0 holds every rank's images
            out = Path(trainer.run_dir) / "samples" / f"{step:07d}.png"
            write_samples(out, images, labels)
            protocol.write_card(out, _card(trainer, sampler, step, n, class_labels, out))
            trainer.logger.info(f"step {step:07d} wrote sample grid {out}")


class EvalHook:
    """A training callback (``dit.train.callbacks.TrainCallback``): ADM's metrics of EMA samples.

    Logged beside the loss.
    """

    name = "eval"

    def __init__(self, scfg: TrainSamplingConfig, seed: int, every: int = 0):
        self.scfg, self.seed, self.every = scfg, seed, every
        self._extractor: Optional[FeatureExtractor] = None
        self._tb = None

    def _reference(self, trainer) -> str:
        if self.scfg.eval_ref:
            return self.scfg.eval_ref
        return str(training_reference(trainer))

    def __call__(self, step: int, ema_model, trainer) -> None:
        s = self.scfg
        sampler = _sampler(trainer, ema_model, s.eval_cfg_scale, self.seed)
        labels = gen.sample_labels(s.eval_samples, sampler.num_classes)
        images = gen.generate_images(sampler, labels, s.eval_samples, s.eval_batch_size, trainer.info)
        if images is None:  # not rank 0: rank 0 holds every rank's images
            return
        if self._extractor is None:
            self._extractor = make_extractor(s.eval_features, s.inception, str(trainer.device))
        extractor = self._extractor
        ref = load_reference(str(self._reference(trainer)), extractor, s.eval_batch_size)
        feats = extractor.features(images, s.eval_batch_size)
        with_labels = s.eval_features.startswith("classifier:") and labels is not None
        result = compute_metrics(feats, ref.arrays, labels if with_labels else None)
        result.update(
            step=int(step),
            features=extractor.name,
            reference=self._reference(trainer),
            reference_statistics=ref.describe(),
            not_comparable_because=comparability_notes(s.eval_samples, ref, s.eval_features),
        )
        out = Path(trainer.run_dir) / "eval" / f"{step:07d}.json"
        result["protocol"] = _card(trainer, sampler, step, s.eval_samples, None, out)
        write_json(out, result)
        scalars = {k: float(result[k]) for k in SCALARS if result.get(k) is not None}
        self._log(trainer, step, scalars)

    def _log(self, trainer, step: int, scalars: dict[str, float]) -> None:
        run = Path(trainer.run_dir)
        path = run / "eval_metrics.csv"
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["step", *SCALARS], extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({"step": int(step), **scalars})
        if self._tb is None and getattr(trainer.cfg, "tensorboard", False):
            self._tb = tensorboard_writer(run / "tb", filename_suffix=".eval")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"eval/{k}", v, int(step))
            self._tb.flush()
        trainer.logger.info(f"step {int(step):07d} eval " + " ".join(f"{k}={v:.4g}" for k, v in scalars.items()))


def training_reference(trainer) -> Path:
    """``<run>/eval/reference.npz``: the training images as uint8, written once by rank 0."""
    out = Path(trainer.run_dir) / "eval" / "reference.npz"
    if out.is_file():
        return out
    source = trainer.source
    if source.kind != "images":
        raise UserError("--eval-every on a latent cache needs --eval-ref (an .npz or folder of reference images)")
    ds = source.dataset
    picks = np.linspace(0, len(ds) - 1, num=min(len(ds), MAX_REFERENCE)).round().astype(int)
    images, labels = [], []
    for i in picks:
        x, y = ds[int(i)]  # (3, S, S) in [-1, 1]
        images.append(((x.float() + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy())  # (S, S, 3)
        labels.append(int(y))
    write_npz(out, np.stack(images), None if source.unconditional else np.asarray(labels))
    return out


def training_callbacks(cfg: TrainConfig, scfg: Optional[TrainSamplingConfig] = None) -> list:
    """The hooks ``cfg.sample_every``/``cfg.eval_every`` ask for, as the trainer's ``callbacks`` list."""
    scfg = scfg or TrainSamplingConfig()
    scfg.validate()
    if cfg.eval_every > 0:  # fail before training, not at the first evaluation
        if scfg.eval_ref and not Path(scfg.eval_ref).exists():
            raise UserError(f"--eval-ref {scfg.eval_ref} does not exist; pass an .npz of reference images or a folder")
        kind, _, arg = scfg.eval_features.partition(":")
        if kind == "inception":
            find_weights(scfg.inception)
        elif not Path(arg).is_file():  # classifier:PATH (the syntax is checked by validate)
            raise UserError(f"classifier file {arg} not found; train one with `dit train-classifier --out {arg}`")
    hooks: list[SampleGridHook | EvalHook] = []
    if cfg.sample_every > 0:
        hooks.append(SampleGridHook(scfg, cfg.seed, cfg.sample_every))
    if cfg.eval_every > 0:
        hooks.append(EvalHook(dataclasses.replace(scfg), cfg.seed, cfg.eval_every))
    return hooks
