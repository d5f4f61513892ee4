"""dit.models: the DiT model family (paper Table 1 sizes, four block designs) and its cost counts.

``DiT_models["DiT-XL/2"](input_size=32)`` or ``build_model(ModelConfig(...))`` build a model;
``dit.models.flops`` counts parameters and multiply-accumulates the paper's way.
"""

from dit.models.blocks import BLOCK_DESIGNS
from dit.models.dit import DiT
from dit.models.registry import DiT_models, build_model, model_names, resolve

__all__ = ["BLOCK_DESIGNS", "DiT", "DiT_models", "build_model", "model_names", "resolve"]
