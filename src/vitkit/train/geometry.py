"""The geometric part of training augmentation, for a whole batch in one resampling: a random
resized crop (or a pad-and-crop shift), a horizontal flip and RandAugment's shears,
translations and rotations, all folded into one affine map per image and applied by
`grid_sample` on whatever device the batch is on.

Per-image parameters are drawn on the CPU (a few numbers per image, from torch's global
generator, which the trainer seeds per step), so nothing waits on the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rrc_boxes(count: int, height: int, width: int, scale: tuple[float, float],
              ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:
    """Crop boxes (top, left, h, w) of `RandomResizedCrop`, as torchvision draws them: up to
    `tries` (area, log-aspect) draws per image, the first that fits, else a centre crop."""
    area = height * width
    target = area * torch.empty(count, tries).uniform_(*scale)
    log_ratio = torch.empty(count, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1)  # the first draw that fits (0 when none does)
    rows = torch.arange(count)
    h, w, found = h[rows, first], w[rows, first], fits.any(dim=1)
    # torchvision's fallback: the whole image, clamped to the aspect range, centred.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif in_ratio > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    h = torch.where(found, h, torch.tensor(float(fallback[0])))
    w = torch.where(found, w, torch.tensor(float(fallback[1])))
    top = torch.floor(torch.rand(count) * (height - h + 1))
    left = torch.floor(torch.rand(count) * (width - w + 1))
    top = torch.where(found, top, torch.floor((height - h) / 2))
    left = torch.where(found, left, torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1)


def shift_boxes(count: int, height: int, width: int, pad: int) -> torch.Tensor:
    """Boxes of `RandomCrop(size, padding=pad)` on an image of that size: the same size,
    shifted by a whole number of pixels in [-pad, pad] each way (zeros come in)."""
    top = torch.randint(-pad, pad + 1, (count,)).float()
    left = torch.randint(-pad, pad + 1, (count,)).float()
    size = torch.tensor([float(height), float(width)]).expand(count, 2)
    return torch.cat([top[:, None], left[:, None], size], dim=1)


def whole_boxes(count: int, height: int, width: int) -> torch.Tensor:
    """The whole image as the box of every image (no crop)."""
    return torch.tensor([0.0, 0.0, float(height), float(width)]).expand(count, 4).clone()


def resample(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
             inverse: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    """float (B, C, H, W) -> (B, C, h, w): for each output pixel, undo RandAugment's affine
    (`inverse`, (B, 3, 3) in output pixels; None: none), the flip, then the crop box, and
    sample the source bilinearly. Pixels whose pre-RandAugment position falls outside the
    crop get 0, as torchvision's fill does; the crop itself brings in zeros where it
    reaches past the image (pad-and-crop)."""
    count, _, src_h, src_w = images.shape
    out_h, out_w = size
    device = images.device
    ys = torch.arange(out_h, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(out_w, device=device, dtype=torch.float32) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1)  # (h, w, 3)
    points = points.expand(count, out_h, out_w, 3)
    inside = None
    if inverse is not None:
        points = torch.einsum("bij,bhwj->bhwi", inverse.to(device), points)
        px, py = points[..., 0], points[..., 1]
        inside = (px >= 0) & (px <= out_w) & (py >= 0) & (py <= out_h)
    boxes, flips = boxes.to(device), flips.to(device)
    u = points[..., 0] / out_w  # 0..1 across the crop
    u = torch.where(flips[:, None, None], 1 - u, u)
    v = points[..., 1] / out_h
    top, left, box_h, box_w = (boxes[:, k, None, None] for k in range(4))
    src_x = left + u * box_w  # source pixel coordinates
    src_y = top + v * box_h
    grid = torch.stack([2 * src_x / src_w - 1, 2 * src_y / src_h - 1], dim=-1)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if inside is not None:
        out = out * inside[:, None].to(out.dtype)
    return out
