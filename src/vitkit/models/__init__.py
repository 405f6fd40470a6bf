"""The Vision Transformer (equations 1-4) and its configuration presets."""

from .config import PRESETS, ViTConfig, get_config, list_models, model_title, to_2tuple
from .flops import forward_flops
from .layers import resample_pos_embed
from .meta import ModelMeta, Preprocessing
from .modes import evaluating
from .vit import MLP, EncoderBlock, MultiHeadSelfAttention, PatchEmbedding, VisionTransformer

__all__ = [
    "MLP",
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
    "resample_pos_embed",
    "to_2tuple",
]
