"""Batched preprocessing on uint8 image tensors (CPU or GPU): resizing, channel conversion,
normalisation, and the resize-then-centre-crop used for evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
    "nearest-exact": InterpolationMode.NEAREST_EXACT,
    "lanczos": InterpolationMode.LANCZOS,
}


def to_2tuple(size: int | Sequence[int]) -> tuple[int, int]:
    """(h, w) from an int or a pair."""
    if isinstance(size, int):
        return (size, size)
    height, width = (int(s) for s in size)
    return (height, width)


def interpolation_mode(name: str) -> InterpolationMode:
    """torchvision's InterpolationMode for a name such as 'bicubic'."""
    try:
        return _INTERPOLATIONS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {name!r}; use one of {sorted(_INTERPOLATIONS)}"
        ) from None


def resize_batch(
    images: torch.Tensor, size: int | Sequence[int], interpolation: str = "bicubic"
) -> torch.Tensor:
    """Resize a batch (N, C, H, W) to exactly `size` (antialiased); uint8 stays uint8.

    Returns the input itself when it already has that size.
    """
    size = to_2tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    return TF.resize(images, list(size), interpolation=interpolation_mode(interpolation),
                     antialias=True)


def convert_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} converted to `in_chans` channels (grey <-> RGB)."""
    channels = images.shape[-3]
    if channels == in_chans:
        return images
    if channels == 1 and in_chans == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:]).contiguous()
    if channels == 3 and in_chans == 1:
        return TF.rgb_to_grayscale(images, num_output_channels=1)
    raise ValueError(f"cannot convert {channels}-channel images to {in_chans} channels")


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 images (..., C, H, W) to floats: (x / 255 - mean) / std per channel, in `dtype`."""
    channels = images.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std have {len(mean)}/{len(std)} values but the images have {channels} channels"
        )
    shape = (channels, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    out = images.float().div_(255.0).sub_(mean_t).div_(std_t)
    return out.to(dtype)


def eval_resize_crop(
    image: torch.Tensor,
    img_size: int | Sequence[int],
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """timm-style evaluation preprocessing of one uint8 image (C, H, W) or a batch.

    Square targets: resize the shorter side to floor(size / crop_pct), then centre-crop
    `img_size`. Non-square targets: resize to floor(h / crop_pct) x floor(w / crop_pct)
    exactly, then centre-crop. With crop_pct = 1 and a square input this is a plain resize.
    """
    height, width = to_2tuple(img_size)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    mode = interpolation_mode(interpolation)
    if height == width:
        scale = math.floor(height / crop_pct)
        image = TF.resize(image, [scale], interpolation=mode, antialias=True)
    else:
        scale_hw = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
        image = TF.resize(image, scale_hw, interpolation=mode, antialias=True)
    return TF.center_crop(image, [height, width])
