"""`create_model`: a named model (ViT, hybrid or ResNet), freshly initialised or holding
pretrained weights."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .models import build_model, get_config, model_title
from .models.config import preset_preprocessing
from .weights import create_pretrained

if TYPE_CHECKING:
    from torch import nn


def create_model(
    name: str | None, pretrained: str | os.PathLike | None = None, **overrides: Any
) -> nn.Module:
    """Build the preset `name` (see `list_models()`), with config fields overridden.

    With `pretrained` (a checkpoint path or hub id), the weights are loaded; a different
    `num_classes` gets a zero-initialised head and a different `img_size` resampled position
    embeddings. `name` may be None when the checkpoint says what it is.
    """
    if pretrained is not None:
        return create_pretrained(name, pretrained, overrides)
    if name is None:
        raise ValueError("create_model needs a model name when no pretrained weights are given")
    model = build_model(get_config(name, **overrides))
    model.meta.name = model_title(name, model.config)  # the preset plus what was changed
    prep = preset_preprocessing(name)  # a descendant's mean/std (ImageNet's, OpenAI's)
    if prep is not None and getattr(model.config, "in_chans", 0) == 3:
        model.meta.preprocessing = model.meta.preprocessing.replace(**prep)
    return model
