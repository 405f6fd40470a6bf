"""vitkit: Vision Transformers (Dosovitskiy et al., ICLR 2021) on PyTorch."""

from .factory import create_model
from .models import ViTConfig, VisionTransformer, list_models
from .weights import load_pretrained, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "ViTConfig",
    "VisionTransformer",
    "create_model",
    "list_models",
    "load_pretrained",
    "save_pretrained",
]
