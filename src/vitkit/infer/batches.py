"""Turning uint8 image batches into the float input a model expects: its channels, size,
mean/std, device and compute dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..data.transforms import convert_channels, normalize, resize_batch
from ..models import VisionTransformer
from ..weights.io import preprocessing_of


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


def model_inputs(model: VisionTransformer, images: torch.Tensor,
                 device: torch.device | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float32 (B, in_chans, img_h, img_w) on `device`."""
    prep = preprocessing_of(model)
    device = device or model_device(model)
    images = images.to(device, non_blocking=True)
    images = convert_channels(images, model.config.in_chans)
    images = resize_batch(images, tuple(prep["img_size"]), prep.get("interpolation", "bicubic"))
    return normalize(images, prep["mean"], prep["std"])


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (bf16/fp16), or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put the model in eval mode and no-grad for the block, restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
