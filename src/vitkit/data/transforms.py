"""Batched preprocessing of uint8 image tensors (CPU or GPU), and the one path from pixels to
model input that training, evaluation, prediction and analysis all take:

    resize_crop   resize the shorter side to img_size / crop_pct, centre-crop img_size
                  (done once, when files are decoded: `vitkit.data.decode.load_image`)
    model_input   channels, the resize_crop of pixels not yet at img_size, (x/255 - mean) / std
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..models import Preprocessing, to_2tuple
from ..models.meta import INTERPOLATIONS
from .images import shape_problem


def interpolation_mode(name: str) -> InterpolationMode:
    """torchvision's InterpolationMode for a name such as 'bicubic' (its values are the names)."""
    if name.lower() not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; use one of {', '.join(INTERPOLATIONS)}")
    return InterpolationMode(name.lower())


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


def resize_crop(
    image: torch.Tensor,
    img_size: int | Sequence[int],
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """timm-style evaluation preprocessing of one uint8 image (C, H, W) or a batch.

    Square targets: resize the shorter side to floor(size / crop_pct), then centre-crop
    `img_size`. Non-square targets: resize to floor(h / crop_pct) x floor(w / crop_pct)
    exactly, then centre-crop. An image already at `img_size` with crop_pct 1 is returned
    as it is. Images too thin or too large once resized (`shape_problem`) raise ValueError
    before anything is allocated.
    """
    height, width = to_2tuple(img_size)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    needed = (math.ceil(height / crop_pct), math.ceil(width / crop_pct))
    problem = shape_problem(image.shape[-1], image.shape[-2], needed)
    if problem is not None:
        raise ValueError(f"image {problem}")
    if crop_pct == 1 and tuple(image.shape[-2:]) == (height, width):
        return image
    mode = interpolation_mode(interpolation)
    if height == width:
        scale = [math.floor(height / crop_pct)]
    else:
        scale = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
    image = TF.resize(image, scale, interpolation=mode, antialias=True)
    return TF.center_crop(image, [height, width])


def model_input(
    images: torch.Tensor,
    img_size: int | Sequence[int],
    preprocessing: Preprocessing,
    in_chans: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (B, C, H, W) pixels to what a model with this preprocessing takes: `in_chans`
    channels, resized and centre-cropped to img_size unless they are at it already (images
    decoded by `load_image` are), normalised by its mean and std, in `dtype`."""
    images = convert_channels(images, in_chans)
    if tuple(images.shape[-2:]) != to_2tuple(img_size):
        images = resize_crop(images, img_size, preprocessing.crop_pct, preprocessing.interpolation)
    return normalize(images, preprocessing.mean, preprocessing.std, dtype)
