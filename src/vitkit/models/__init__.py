"""The Vision Transformer (equations 1-4) and its configuration presets."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import PRESETS, ViTConfig, get_config, list_models, model_title, to_2tuple
from .flops import forward_flops, parameter_count
from .meta import ModelMeta, Preprocessing

if TYPE_CHECKING:
    from .layers import resample_pos_embed
    from .modes import evaluating
    from .vit import MLP, EncoderBlock, MultiHeadSelfAttention, PatchEmbedding, VisionTransformer

# What needs torch is imported on first use, so `vitkit models` and `--help` start fast.
_LAZY = {"resample_pos_embed": "layers", "evaluating": "modes", "MLP": "vit",
         "EncoderBlock": "vit", "MultiHeadSelfAttention": "vit", "PatchEmbedding": "vit",
         "VisionTransformer": "vit"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


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
    "parameter_count",
    "resample_pos_embed",
    "to_2tuple",
]
