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
    """float (B, C, H, W) -> (B, C, h, w): each output pixel is taken back through RandAugment's
    affine (`inverse`, (B, 3, 3) in output pixels; None: none), the flip and the crop box to
    the source, which is sampled bilinearly. The whole chain is one affine map per image,
    composed on the CPU, so the device does one `affine_grid` and one `grid_sample`. Pixels
    whose pre-RandAugment position falls outside the crop get 0, as torchvision's fill does;
    the crop brings in zeros where it reaches past the image (pad-and-crop)."""
    count, _, src_h, src_w = images.shape
    out_h, out_w = size
    to_pixels = torch.tensor([[out_w / 2, 0, out_w / 2], [0, out_h / 2, out_h / 2], [0, 0, 1.0]])
    chain = to_pixels.expand(count, 3, 3)
    if inverse is not None:
        chain = inverse @ chain  # output pixels -> crop pixels before RandAugment
    flip = torch.eye(3).repeat(count, 1, 1)
    flip[flips, 0, 0], flip[flips, 0, 2] = -1.0, float(out_w)
    top, left, box_h, box_w = boxes.unbind(1)
    crop = torch.zeros(count, 3, 3)
    crop[:, 0, 0], crop[:, 0, 2] = box_w / out_w, left
    crop[:, 1, 1], crop[:, 1, 2] = box_h / out_h, top
    crop[:, 2, 2] = 1.0
    to_source = torch.tensor([[2 / src_w, 0, -1], [0, 2 / src_h, -1], [0, 0, 1.0]])
    grid = _affine_grid((to_source @ crop @ flip @ chain)[:, :2], size, images.device)
    if inverse is not None:
        # Outside the crop before RandAugment: the crop is axis-aligned in the source, so that
        # is outside a rectangle of source coordinates; send those samples off the image.
        bounds = torch.stack([2 * left / src_w - 1, 2 * (left + box_w) / src_w - 1,
                              2 * top / src_h - 1, 2 * (top + box_h) / src_h - 1], dim=1)
        bounds = bounds.to(images.device)[:, :, None, None]
        gx, gy = grid[..., 0], grid[..., 1]
        inside = ((gx >= bounds[:, 0]) & (gx <= bounds[:, 1])
                  & (gy >= bounds[:, 2]) & (gy <= bounds[:, 3]))
        gx.masked_fill_(~inside, 3.0)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine_grid(theta: torch.Tensor, size: tuple[int, int], device: torch.device
                 ) -> torch.Tensor:
    """`F.affine_grid(theta, ..., align_corners=False)`, (B, h, w, 2), built by broadcasting:
    two multiply-adds instead of a batched matrix product."""
    out_h, out_w = size
    ox = (torch.arange(out_w, device=device, dtype=torch.float32) * 2 + 1) / out_w - 1
    oy = (torch.arange(out_h, device=device, dtype=torch.float32) * 2 + 1) / out_h - 1
    t = theta.to(device).transpose(1, 2)[:, :, None, None, :]  # (B, 3, 1, 1, 2)
    return t[:, 0] * ox[None, :, None] + t[:, 1] * oy[:, None, None] + t[:, 2]
