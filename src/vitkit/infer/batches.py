"""Turning uint8 image batches into the float input a model expects: its channels, size,
mean/std, device and compute dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..data.transforms import convert_channels, normalize, resize_batch
from ..models import VisionTransformer
from ..weights.io import preprocessing_of
from .optimize import optimize_for_inference


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


def inference_module(model: VisionTransformer, dtype: torch.dtype,
                     device: torch.device) -> torch.nn.Module:
    """What vitkit's commands run: the model itself in fp32, else a frozen copy holding its
    weights in `dtype` (`optimize_for_inference`), so no weight is re-cast on every batch."""
    if dtype == torch.float32:
        return model
    return optimize_for_inference(model, dtype=dtype, device=device)


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
