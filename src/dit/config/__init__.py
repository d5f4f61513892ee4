"""Configuration dataclasses shared across the package, one module per config.

Each config is a plain dataclass that round-trips through ``to_dict``/``from_dict`` so it can
be stored inside checkpoints and protocol cards (self-describing files). Every name is importable
from ``dit.config`` itself.
"""

from dit.config.base import (
    DictMixin,
)
from dit.config.fields import SettingError, check_choices, check_settings, setting
from dit.config.model import (
    BLOCK_DESIGNS,
    BLOCK_OPTIONS,
    BlockDesign,
    MLP_TYPES,
    MlpType,
    ModelConfig,
    ModelSizes,
    NORM_TYPES,
    NormType,
    QK_NORM_TYPES,
    QkNormType,
)
from dit.config.diffusion import (
    DiffusionConfig,
    FLOW_PREDICTIONS,
    FlowPrediction,
    OBJECTIVES,
    Objective,
    PREDICTION_TYPES,
    PredictionType,
    TIMESTEP_SAMPLINGS,
    TimestepSampling,
)
from dit.config.serve import ServeConfig
from dit.config.train import (
    EMA_TYPES,
    EmaType,
    LR_SCHEDULES,
    LrSchedule,
    MAX_DEFAULT_WORKERS,
    ON_BAD_IMAGE,
    OnBadImage,
    TRAIN_PRECISIONS,
    TrainConfig,
    TrainPrecision,
    default_num_workers,
)
from dit.config.outputs import OutputPolicy
from dit.config.recipes import (
    RECIPES,
    RECIPE_NAMES,
    RecipeName,
    apply_recipe,
)
from dit.config.sample import (
    GUIDANCE_CHANNELS,
    GuidanceChannels,
    OFFICIAL_GUIDED_CHANNELS,
    PRECISIONS,
    Precision,
    SAMPLER_NAMES,
    SampleConfig,
    WeightsChoice,
    guided_channel_count,
)
from dit.config.request import (
    API_FIELDS,
    OUTPUT_TYPES,
    GenerationRequest,
    OutputType,
    api_setting,
    request_from_api,
)
from dit.config.eval import (
    ClassifierTrainConfig,
    EvalConfig,
    TrainSamplingConfig,
    parse_features,
    validate_features,
)
from dit.config.demo import (
    DEMO_NUM_CLASSES,
    DemoConfig,
)

__all__ = [
    "API_FIELDS",
    "GenerationRequest",
    "OUTPUT_TYPES",
    "OutputType",
    "request_from_api",
    "api_setting",
    "SettingError",
    "check_choices",
    "check_settings",
    "setting",
    "BLOCK_DESIGNS",
    "BLOCK_OPTIONS",
    "BlockDesign",
    "ClassifierTrainConfig",
    "DEMO_NUM_CLASSES",
    "DemoConfig",
    "DictMixin",
    "DiffusionConfig",
    "EMA_TYPES",
    "EmaType",
    "EvalConfig",
    "FLOW_PREDICTIONS",
    "FlowPrediction",
    "GUIDANCE_CHANNELS",
    "GuidanceChannels",
    "LR_SCHEDULES",
    "LrSchedule",
    "MAX_DEFAULT_WORKERS",
    "MLP_TYPES",
    "MlpType",
    "ModelConfig",
    "ModelSizes",
    "NORM_TYPES",
    "NormType",
    "OBJECTIVES",
    "OFFICIAL_GUIDED_CHANNELS",
    "ON_BAD_IMAGE",
    "Objective",
    "OnBadImage",
    "PRECISIONS",
    "PREDICTION_TYPES",
    "Precision",
    "PredictionType",
    "OutputPolicy",
    "QK_NORM_TYPES",
    "QkNormType",
    "RECIPES",
    "RECIPE_NAMES",
    "RecipeName",
    "SAMPLER_NAMES",
    "SampleConfig",
    "ServeConfig",
    "TIMESTEP_SAMPLINGS",
    "TRAIN_PRECISIONS",
    "TimestepSampling",
    "TrainConfig",
    "TrainPrecision",
    "TrainSamplingConfig",
    "WeightsChoice",
    "apply_recipe",
    "default_num_workers",
    "guided_channel_count",
    "parse_features",
    "validate_features",
]
