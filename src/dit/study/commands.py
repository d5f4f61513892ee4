"""The command lines a study runs — `dit train-classifier`, `dit train`, `dit sample`, `dit eval` —
built in this one place from a :class:`~dit.study.spec.StudySpec` and a :class:`~dit.study.grid.Run`
(`dit demo` is a one-run study and prints and runs these same lines).

Flags are spelled from setting names by :func:`flags` (``global_batch_size=256`` →
``--global-batch-size 256``): each name is a field of the config the sub-command's flags are
generated from, and its flag is read from that field, so a renamed flag is followed here.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, Callable, Sequence

from dit.config import (
    ClassifierTrainConfig,
    DiffusionConfig,
    EvalConfig,
    GenerationRequest,
    ModelConfig,
    OutputPolicy,
    SampleConfig,
    TrainConfig,
)
from dit.config.fields import flag_of
from dit.errors import UserError
from dit.study.grid import Run
from dit.study.spec import DIGITS, StudySpec

RunCommand = Callable[[list[str]], int]
TRAIN = (TrainConfig, ModelConfig, DiffusionConfig)  # the configs `dit train`'s flags set
SAMPLE = (SampleConfig, GenerationRequest)  # `dit sample`'s
SAMPLE_BATCH = 100


def flag(configs: Sequence[type], name: str) -> str:
    """The flag of setting ``name``: that config field's own (:func:`dit.config.fields.flag_of`), else
    ``--name`` (a flag that sets no config field, such as `dit eval`'s ``--out``)."""
    for cls in configs:
        f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if f is not None:
            return flag_of(f)
    return "--" + name.replace("_", "-")


def flags(configs: Sequence[type], **settings: Any) -> list[str]:
    """``FLAG value`` per setting, in order: None is left out, True is the bare switch, False ``--no-…``."""
    out: list[str] = []
    for name, value in settings.items():
        spelled = flag(configs, name)
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(spelled if value else "--no-" + spelled.removeprefix("--"))
        else:
            out += [spelled, str(value)]
    return out


def format_command(argv: Sequence[str]) -> str:
    """The shell line of a `dit` sub-command's argv."""
    return "dit " + " ".join(shlex.quote(a) for a in argv)


def run_checked(run_command: RunCommand, argv: list[str]) -> None:
    """One sub-command through ``run_command`` (the `dit` entry point: same parsing, same errors as the shell)."""
    code = run_command(argv)
    if code != 0:
        raise UserError(f"`{format_command(argv)}` failed (exit status {code}); see the error above")


def fill(argv: list[str], **values: str) -> list[str]:
    """A planned argv with its ``{ckpt}``, ``{samples}`` and ``{result}`` fields filled in."""
    return [a.format(**values) if "{" in a else a for a in argv]


def classifier_argv(spec: StudySpec, test_data: str | Path, out: str | Path) -> list[str]:
    """`dit train-classifier` of the study's evaluation classifier, on the split held out from training."""
    return [
        "train-classifier",
        *flags(
            (ClassifierTrainConfig,),
            data_path=test_data,
            out=out,
            image_size=spec.image_size,
            width=spec.classifier_width,
            epochs=spec.classifier_epochs,
            seed=spec.eval_seed,
            device=spec.device,
        ),
    ]


def train_argv(spec: StudySpec, run: Run, run_dir: Path, train_data: str) -> list[str]:
    """`dit train` of one run: its axes, the spec's budget and training settings, then ``train_args``."""
    settings = dict(
        data_path=train_data,
        image_size=spec.image_size,
        vae=spec.vae,
        flip=False if spec.data == DIGITS else None,  # a mirrored digit is another glyph
        depth=run.depth,
        hidden_size=run.hidden_size,
        num_heads=run.num_heads,
        patch_size=run.patch_size,
        block=run.block,
        recipe=run.recipe,
        global_batch_size=run.batch_size,
        results_dir=run_dir / "train",
        max_steps=run.max_steps,
        max_minutes=run.max_minutes,
        ckpt_every=run.ckpt_every,
        keep_last=0,
        log_every=spec.log_every or min(run.ckpt_every, 50),
        lr=spec.lr,
        warmup_steps=spec.warmup_steps,
        precision=spec.precision,
        num_workers=0,
        seed=run.seed,
        device=spec.device,
    )
    return ["train", *flags(TRAIN, **settings), *spec.train_args]


def sample_argv(spec: StudySpec, run: Run) -> list[str]:
    """`dit sample` of one checkpoint (``{ckpt}`` and ``{samples}`` are filled per checkpoint).

    Every checkpoint of every run draws from the same noise (``eval_seed``)."""
    settings = dict(
        ckpt="{ckpt}",
        num_samples=spec.num_samples,
        sampler=run.sampler,
        num_sampling_steps=spec.sampling_steps,
        cfg_scale=spec.cfg_scale,
        seed=spec.eval_seed,
        batch_size=SAMPLE_BATCH,
        precision=spec.precision,
        out="{samples}",
        device=spec.device,
        overwrite=True,  # the study's own file: a resumed run redoes a checkpoint whose result was not recorded
    )
    return ["sample", *flags(SAMPLE, **settings)]


def eval_argv(
    spec: StudySpec, reference: str, features: str, samples: str = "{samples}", result: str = "{result}"
) -> list[str]:
    """`dit eval` of ``samples`` against the reference images (by default the planned ``{samples}``, ``{result}``)."""
    settings = dict(features=features, out=result, device=spec.device, overwrite=True)  # overwrite: as for sample
    return ["eval", str(samples), reference, *flags((EvalConfig, OutputPolicy), **settings)]
