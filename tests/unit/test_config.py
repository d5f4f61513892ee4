"""Each config dataclass rejects bad values itself, with a one-line UserError naming the flag.

The library entry points (Sampler/load, evaluate, train_classifier, training_callbacks, DiT) call
these, so they get the same checks as the CLI; here validate() is called directly.
"""

import dataclasses

import pytest

from dit.config import (
    ClassifierTrainConfig,
    EvalConfig,
    ModelConfig,
    GenerationRequest,
    SampleConfig,
    TrainSamplingConfig,
)
from dit.errors import UserError


@pytest.mark.parametrize(
    "cls", [ModelConfig, EvalConfig, ClassifierTrainConfig, SampleConfig, GenerationRequest, TrainSamplingConfig]
)
def test_defaults_are_valid(cls):
    cfg = cls()
    assert cfg.validate() is cfg


@pytest.mark.parametrize(
    "cls, change, message",
    [
        (ModelConfig, {"norm": "batch"}, "--norm 'batch' is unknown"),
        (ModelConfig, {"qk_norm": "l2"}, "--qk-norm 'l2' is unknown"),
        (ModelConfig, {"mlp": "relu"}, "--mlp 'relu' is unknown"),
        (ModelConfig, {"class_dropout_prob": 1.5}, "--class-dropout-prob must be in [0, 1]"),
        (ModelConfig, {"class_dropout_prob": float("nan")}, "--class-dropout-prob must be in [0, 1]"),
        (EvalConfig, {"batch_size": 0}, "--batch-size, --nearest-k and --is-split-size must be positive"),
        (EvalConfig, {"nearest_k": 0}, "--batch-size, --nearest-k and --is-split-size must be positive"),
        (EvalConfig, {"is_split_size": -1}, "--batch-size, --nearest-k and --is-split-size must be positive"),
        (EvalConfig, {"features": "vgg"}, "--features must be 'inception' or 'classifier:PATH'"),
        (EvalConfig, {"features": "classifier:"}, "--features must be 'inception' or 'classifier:PATH'"),
        (ClassifierTrainConfig, {"epochs": 0}, "--epochs, --batch-size and --width must be positive"),
        (ClassifierTrainConfig, {"width": 0}, "--epochs, --batch-size and --width must be positive"),
        (ClassifierTrainConfig, {"image_size": 3}, "--image-size at least 4"),
        (ClassifierTrainConfig, {"out": "c.pt"}, "--out must end with .safetensors"),
        (ClassifierTrainConfig, {"val_fraction": 1.0}, "--val-fraction must be in [0, 1)"),
        (ClassifierTrainConfig, {"lr": float("inf")}, "--lr must be a finite positive number"),
        (GenerationRequest, {"precision": "fp8"}, "--precision 'fp8' is unknown"),
        (GenerationRequest, {"guidance_channels": "some"}, "--guidance-channels 'some' is unknown"),
        (GenerationRequest, {"num_sampling_steps": 0}, "--num-sampling-steps must be >= 1"),
        (GenerationRequest, {"cfg_scale": float("inf")}, "--cfg-scale must be a finite number"),
        (GenerationRequest, {"cfg_scale": -1.0}, "--cfg-scale must be a finite number"),
        (GenerationRequest, {"eta": 1.5}, "--eta must be in [0, 1]"),
        (GenerationRequest, {"num_samples": 0}, "--num-samples must be positive"),
        (GenerationRequest, {"batch_size": 0}, "--batch-size must be positive"),
        (GenerationRequest, {"guidance_interval": (0, 500, 999)}, "--guidance-interval takes two timesteps LOW HIGH"),
        (TrainSamplingConfig, {"sample_steps": 0}, "--eval-samples and --eval-batch-size must be positive"),
        (TrainSamplingConfig, {"eval_samples": 0}, "--eval-samples and --eval-batch-size must be positive"),
        (TrainSamplingConfig, {"eval_features": "fid"}, "--eval-features must be 'inception' or 'classifier:PATH'"),
    ],
)
def test_bad_value_is_one_line_user_error(cls, change, message):
    cfg = dataclasses.replace(cls(), **change)
    with pytest.raises(UserError) as e:
        cfg.validate()
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_edges_are_accepted():
    """The bounds themselves are valid (a check that is off by one would refuse them)."""
    ModelConfig(class_dropout_prob=0.0).validate()
    ModelConfig(class_dropout_prob=1.0).validate()
    GenerationRequest(eta=1.0, cfg_scale=0.0, num_sampling_steps=1, num_samples=1, batch_size=1).validate()
    ClassifierTrainConfig(image_size=4, val_fraction=0.0).validate()
    EvalConfig(features="classifier:c.safetensors", batch_size=1, nearest_k=1, is_split_size=1).validate()


def test_library_entry_points_validate(tmp_path):
    """The library refuses what the CLI refuses, before any work: evaluate, train_classifier, the hooks."""
    from dit.config import TrainConfig
    from dit.evaluation.classifier import train_classifier
    from dit.evaluation.evaluate import evaluate
    from dit.evaluation.hooks import training_callbacks

    with pytest.raises(UserError, match="--nearest-k"):
        evaluate(EvalConfig(samples=str(tmp_path / "a.npz"), reference=str(tmp_path / "b.npz"), nearest_k=0))
    with pytest.raises(UserError, match="--width"):
        train_classifier(ClassifierTrainConfig(data_path=str(tmp_path), width=0))
    with pytest.raises(UserError, match="--eval-batch-size"):
        training_callbacks(TrainConfig(max_steps=1), TrainSamplingConfig(eval_batch_size=0))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_size": 15}, "multiple of --patch-size"),
        ({"hidden_size": 30, "num_heads": 4}, "hidden size 30 is not divisible by 4 heads"),
        ({"recipe": "slow"}, "--recipe 'slow' is unknown; choose one of paper, fast"),
        ({"precision": "fp64"}, "--precision 'fp64' is unknown"),
        ({"held_out_fraction": 0.0}, "--held-out-fraction must be between 0 and 1"),
        ({"strip_class": -1}, "--strip-class must be a digit 0..9"),
        ({"num_samples": 99, "grid_per_class": 10}, "fewer than the grid's 10 x --grid-per-class 10"),
        ({"num_samples": 3, "grid_per_class": 0}, "--num-samples must be more than 3"),
        ({"strip_frames": 1}, "--strip-frames must be at least 2"),
    ],
)
def test_demo_config_validate(change, message):
    from dit.config import DemoConfig

    assert DemoConfig().validate() == DemoConfig()
    with pytest.raises(UserError) as e:
        dataclasses.replace(DemoConfig(), **change).validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_train_config_refuses_an_unknown_recipe_or_ema_type():
    from dit.config import TrainConfig

    TrainConfig(max_steps=1).validate()
    for change, message in (({"recipe": "slow"}, "--recipe 'slow' is unknown"), ({"ema_type": "x"}, "--ema-type 'x'")):
        with pytest.raises(UserError) as e:
            dataclasses.replace(TrainConfig(max_steps=1), **change).validate()
        assert message in str(e.value) and "\n" not in str(e.value)
