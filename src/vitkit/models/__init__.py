"""The Vision Transformer (equations 1-4), the hybrid (Section 3.1), the ResNet baselines, and
their configuration presets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .config import (
    PRESETS,
    BiTResNetConfig,
    HybridConfig,
    ResNetConfig,
    ViTConfig,
    get_config,
    list_models,
    model_title,
    to_2tuple,
)
from .flops import forward_flops, parameter_count
from .meta import ModelMeta, Preprocessing

if TYPE_CHECKING:
    from .build import ARCHITECTURES, architecture_of, build_model, config_class, is_transformer
    from .hybrid import HybridVisionTransformer
    from .layers import resample_pos_embed
    from .masked import MaskedPatchPrediction
    from .modes import evaluating
    from .resnet import BiTResNetClassifier, ResNet
    from .vit import MLP, EncoderBlock, MultiHeadSelfAttention, PatchEmbedding, VisionTransformer

# What needs torch is imported on first use, so `vitkit models` and `--help` start fast.
_LAZY = {"resample_pos_embed": "layers", "evaluating": "modes", "MLP": "vit",
         "EncoderBlock": "vit", "MultiHeadSelfAttention": "vit", "PatchEmbedding": "vit",
         "VisionTransformer": "vit", "HybridVisionTransformer": "hybrid",
         "MaskedPatchPrediction": "masked", "BiTResNetClassifier": "resnet", "ResNet": "resnet",
         "ARCHITECTURES": "build", "architecture_of": "build", "build_model": "build",
         "config_class": "build", "is_transformer": "build"}
__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "ARCHITECTURES",
    "BiTResNetClassifier",
    "BiTResNetConfig",
    "HybridConfig",
    "HybridVisionTransformer",
    "ResNet",
    "ResNetConfig",
    "architecture_of",
    "build_model",
    "config_class",
    "is_transformer",
    "MLP",
    "MaskedPatchPrediction",
    "ModelMeta",
    "PRESETS",
    "EncoderBlock",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "Preprocessing",
    "ViTConfig",
    "VisionTransformer",
    "evaluating",
    "forward_flops",
    "get_config",
    "list_models",
    "model_title",
    "parameter_count",
    "resample_pos_embed",
    "to_2tuple",
]
