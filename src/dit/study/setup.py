"""What every run of a study shares, made once: the data, the evaluation features, the real-vs-real baseline.

On the bundled digits (``spec.data == "digits"``) the setup exports them with a held-out split, trains
the evaluation classifier on that split (`dit train-classifier`) and scores a class-balanced subset
of real training digits against it (`dit eval`): the floor the runs' FIDs are read against. An
image folder brings its own reference and features. The result is kept in ``setup.json``::

    data/{train,test}/<class>/*.png   the exported digits (test = held out from training)
    classifier.safetensors (+ .json)  the evaluation classifier
    real_train.npz, real.eval.json    the real subset and its scores
    setup.json                        the :class:`Setup`
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dit.data.digits import export_digits
from dit.evaluation.io import load_images
from dit.sampling.writers import write_npz
from dit.runtime.checkpoint import atomic_write_json
from dit.study.commands import RunCommand, classifier_argv, eval_argv, run_checked
from dit.study.spec import DIGITS, StudySpec

EVAL_KEYS = ("fid", "sfid", "class_accuracy", "precision", "recall", "inception_score")


@dataclass(frozen=True)
class Setup:
    train_data: str
    reference: str
    features: str
    real_vs_real: Optional[dict] = None  # the metrics of real training images against the reference
    data: Optional[dict] = None  # the digits export (sizes of the splits), on the bundled digits


@dataclass(frozen=True)
class SetupPaths:
    """Where the setup of a study in ``root`` puts its files."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def classifier(self) -> Path:
        return self.root / "classifier.safetensors"

    @property
    def real(self) -> Path:
        return self.root / "real_train.npz"

    @property
    def real_eval(self) -> Path:
        return self.root / "real.eval.json"


def planned_setup(spec: StudySpec, root: Path) -> Setup:
    """The setup's data, reference and features before it runs (what the commands name)."""
    if spec.data != DIGITS:
        return Setup(spec.data, str(spec.reference), str(spec.features))
    p = SetupPaths(root)
    return Setup(str(p.data / "train"), str(p.data / "test"), f"classifier:{p.classifier}")


def setup_commands(spec: StudySpec, root: Path) -> dict[str, list[str]]:
    """The classifier's training and the real subset's evaluation (digits only; none for an image folder)."""
    if spec.data != DIGITS:
        return {}
    p, s = SetupPaths(root), planned_setup(spec, root)
    return {
        "train-classifier": classifier_argv(spec, s.reference, p.classifier),
        "eval-real": eval_argv(spec, s.reference, s.features, str(p.real), str(p.real_eval)),
    }


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(spec: StudySpec, root: Path, run_command: RunCommand, say: Callable[[str], None] = _stderr) -> Setup:
    """Export the digits, train the classifier (unless it exists), score real images; once per study."""
    record = root / "setup.json"
    if record.is_file():
        return Setup(**json.loads(record.read_text()))
    setup = planned_setup(spec, root)
    if spec.data == DIGITS:
        p, commands = SetupPaths(root), setup_commands(spec, root)
        say(f"exporting the bundled digits at {spec.image_size}px to {p.data}")
        export = export_digits(p.data, spec.image_size, spec.held_out_fraction, spec.eval_seed)
        if not p.classifier.is_file():
            say(f"training the evaluation classifier on the {export.num_test} held-out digits")
            run_checked(run_command, commands["train-classifier"])
        say(f"scoring {spec.num_samples} real digits against the held-out ones")
        n = write_real_subset(Path(export.train_dir), p.real, spec.num_samples, spec.eval_seed)
        run_checked(run_command, commands["eval-real"])
        ev = json.loads(p.real_eval.read_text())
        real_vs_real = {k: ev[k] for k in EVAL_KEYS if k in ev} | {"num_images": n}
        setup = dataclasses.replace(setup, real_vs_real=real_vs_real, data=dataclasses.asdict(export))
    atomic_write_json(record, dataclasses.asdict(setup))
    return setup


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices, as equal a share per class as possible (seeded choice within each class).

    Ordered class by class in turn (like `dit sample`'s balanced labels, sample i of class i mod K),
    never sorted by class: the Inception Score's splits are contiguous, and a split holding one
    class would score 1.
    """
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    chosen: list[int] = []
    while len(chosen) < n and any(pools):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=np.int64)


def write_real_subset(train_dir: Path, out: Path, n: int, seed: int) -> int:
    """A class-balanced ``.npz`` of ``n`` real training digits (the real-vs-real FID's 'samples')."""
    real = load_images(train_dir)
    labels = real.require_labels(train_dir)
    idx = balanced_subset(labels, n, seed)
    write_npz(out, real.images[idx], labels[idx])
    return len(idx)
