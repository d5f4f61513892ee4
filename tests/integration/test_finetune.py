"""Fine-tuning end to end on a tiny model: train → save → `dit train --init-from` on data with
another class count and image size → train → sample; what was loaded equals the source, what was
re-made is listed in the log."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dit.config import DiffusionConfig, ModelConfig, TrainConfig
from dit.runtime.checkpoint import load_checkpoint
from dit.runtime.distributed import DistInfo
from dit.train.init_from import CLASS_TABLE, POS_EMBED
from dit.train.trainer import Trainer

from tests.helpers.sample import trained_run
from tests.helpers.train import make_image_folder


def finetune_argv(src, data, run, *extra):
    return [
        sys.executable,
        "-m",
        "dit.cli.main",
        "train",
        "--init-from",
        str(src),
        "--data-path",
        str(data),
        "--image-size",
        "16",
        "--vae",
        "none",
        "--global-batch-size",
        "4",
        "--results-dir",
        str(run),
        "--num-workers",
        "0",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        *extra,
    ]


@pytest.mark.slow
def test_finetune_to_new_classes_and_size_trains_and_samples(tmp_path):
    src = trained_run(tmp_path / "pre", steps=3)  # 3 classes, 8×8 pixels, depth 2, width 32
    source = load_checkpoint(src)
    data = make_image_folder(tmp_path / "new", classes=2, per_class=4, size=18, seed=1)

    # what the run starts from (no --model: the source's size), checked tensor by tensor
    cfg = TrainConfig(
        data_path=str(data),
        image_size=16,
        vae="none",
        global_batch_size=4,
        max_steps=1,
        results_dir=str(tmp_path / "probe"),
        num_workers=0,
        init_from=str(src),
    )
    t = Trainer(cfg, ModelConfig(name=None), DiffusionConfig(), DistInfo())
    assert (t.model_cfg.depth, t.model_cfg.hidden_size, t.model_cfg.num_classes, t.model_cfg.input_size) == (
        2,
        32,
        2,
        16,
    )
    start, ema = t.model.state_dict(), t.ema.state_dict()
    for k in start:
        if k not in (POS_EMBED, CLASS_TABLE):
            assert torch.equal(start[k], source["model"][k]) and torch.equal(ema[k], source["ema"][k]), k
    assert start[POS_EMBED].shape == (1, 64, 32) and start[CLASS_TABLE].shape == (3, 32)
    assert torch.equal(start[CLASS_TABLE][-1], source["model"][CLASS_TABLE][-1])  # the null class kept
    assert torch.equal(ema[CLASS_TABLE], start[CLASS_TABLE])  # re-made tensors start equal in model and EMA
    t.logger.close()

    run = tmp_path / "ft"
    done = subprocess.run(
        finetune_argv(src, data, run, "--max-steps", "2"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    log = (run / "log.txt").read_text()
    assert (
        "initialised from" in log
        and "re-made: pos_embed" in log
        and "y_embedder.embedding_table.weight (4 → 3 rows" in log
    )
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    state = load_checkpoint(ckpt)
    assert state["step"] == 2 and state["config"]["train"]["init_from"] == str(src)
    assert state["config"]["data"]["class_names"] == ["class0", "class1"]

    out = tmp_path / "grid.png"
    sample = [
        sys.executable,
        "-m",
        "dit.cli.main",
        "sample",
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--num-sampling-steps",
        "2",
        "--num-samples",
        "4",
        "--no-progress",
        "--device",
        "cpu",
    ]
    done = subprocess.run(sample, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 18 + 2, 2 * 18 + 2, 3)  # 2 classes → 2 rows of 2 images of 16×16, padding 2

    # an architecture the source cannot fill: one line, exit 2
    bad = subprocess.run(
        finetune_argv(
            src,
            data,
            tmp_path / "bad",
            "--max-steps",
            "1",
            "--depth",
            "3",
            "--hidden-size",
            "32",
            "--num-heads",
            "2",
            "--patch-size",
            "2",
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "does not fit this model" in bad.stderr
