"""Turning uint8 image batches into the float input a model expects (its channels, size,
mean/std, device), and the module vitkit's commands run for inference."""

from __future__ import annotations

import torch

from ..data.transforms import model_input
from ..models import VisionTransformer
from .optimize import optimize_for_inference


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


def model_inputs(model: VisionTransformer, images: torch.Tensor,
                 device: torch.device | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float32 (B, in_chans, img_h, img_w) on `device`, by
    the model's preprocessing (`vitkit.data.model_input`)."""
    images = images.to(device or model_device(model), non_blocking=True)
    return model_input(images, model.config.img_size, model.meta.preprocessing,
                       model.config.in_chans)


def inference_module(model: VisionTransformer, dtype: torch.dtype,
                     device: torch.device) -> torch.nn.Module:
    """What vitkit's commands run: the model itself in fp32, else a frozen copy holding its
    weights in `dtype` (`optimize_for_inference`), so no weight is re-cast on every batch."""
    if dtype == torch.float32:
        return model
    return optimize_for_inference(model, dtype=dtype, device=device)
