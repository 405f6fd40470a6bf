"""The Vision Transformer (equations 1-4), the hybrid (Section 3.1), the ResNet baselines, and
their configuration presets."""

from .build import ARCHITECTURES, architecture_of, build_model, config_class, is_transformer
from .config import (
    PRESETS,
    BiTResNetConfig,
    HybridConfig,
    ResNetConfig,
    ViTConfig,
    get_config,
    list_models,
    to_2tuple,
)
from .flops import forward_flops
from .hybrid import HybridVisionTransformer
from .layers import resample_pos_embed
from .masked import MaskedPatchPrediction
from .meta import ModelMeta, Preprocessing
from .modes import evaluating
from .resnet import BiTResNetClassifier, ResNet
from .vit import MLP, EncoderBlock, MultiHeadSelfAttention, PatchEmbedding, VisionTransformer

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
    "resample_pos_embed",
    "to_2tuple",
]
