"""The Vision Transformer (equations 1-4) and its configuration presets."""

from .config import PRESETS, ViTConfig, get_config, list_models
from .flops import forward_flops
from .layers import resample_pos_embed
from .vit import MLP, EncoderBlock, MultiHeadSelfAttention, PatchEmbedding, VisionTransformer

__all__ = [
    "MLP",
    "PRESETS",
    "EncoderBlock",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "ViTConfig",
    "VisionTransformer",
    "forward_flops",
    "get_config",
    "list_models",
    "resample_pos_embed",
]
