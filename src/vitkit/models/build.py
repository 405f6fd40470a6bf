"""One place that knows which module each configuration builds, and the architecture name a
checkpoint records for it (the 'architecture' field of vitkit's config.json)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import BiTResNetConfig, HybridConfig, ResNetConfig, ViTConfig
from .hybrid import HybridVisionTransformer
from .resnet import BiTResNetClassifier, ResNet
from .vit import VisionTransformer

# architecture name -> (module class, config class); the first is what old checkpoints hold.
ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "VisionTransformer": (VisionTransformer, ViTConfig),
    "HybridVisionTransformer": (HybridVisionTransformer, HybridConfig),
    "ResNet": (ResNet, ResNetConfig),
    "BiTResNet": (BiTResNetClassifier, BiTResNetConfig),
}
CNNS = ("ResNet", "BiTResNet")  # the baselines: no attention, no patches
DEFAULT_ARCHITECTURE = "VisionTransformer"


def architecture_of(config: Any) -> str:
    """The architecture name of a configuration (the most specific class wins)."""
    for name, (_, config_class) in ARCHITECTURES.items():
        if type(config) is config_class:
            return name
    raise TypeError(f"no architecture builds a {type(config).__name__}")


def config_class(architecture: str | None) -> type:
    """The configuration class of an architecture name; None means the plain ViT."""
    name = architecture or DEFAULT_ARCHITECTURE
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; vitkit builds "
                         f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name][1]


def build_model(config: Any) -> nn.Module:
    """The freshly initialised model of a configuration."""
    return ARCHITECTURES[architecture_of(config)][0](config)


def is_transformer(model: nn.Module) -> bool:
    """Whether a model has attention to analyse (a ViT or a hybrid, not a CNN)."""
    return isinstance(model, VisionTransformer)
