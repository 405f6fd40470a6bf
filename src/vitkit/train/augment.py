"""The recipe's training augmentation for whole batches, on whatever device the batch is on:

    crop (random resized, or pad-and-crop) + horizontal flip + RandAugment's geometric ops
        -> one affine resampling per image (`geometry.resample`)
    RandAugment's colour ops -> normalisation -> random erasing -> MixUp / CutMix

Each image gets its own crop, flip, ops and erased box, drawn as torchvision's transforms
draw them (see tests/test_augment.py for the comparison in distribution), but nothing loops
over images in Python. Random numbers come from torch's global generators, which the trainer
seeds per step, so a resumed run augments exactly as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math

import torch

from ..data.transforms import resize_crop
from ..device import torch_threads
from ..models import Preprocessing
from .geometry import resample, rrc_boxes, shift_boxes, whole_boxes
from .randaugment import GEOMETRIC, OPS, apply_colour_ops, draw_ops, geometric_inverse
from .recipes import Recipe

SMALL_BATCH = 2**22  # uint8 values; CIFAR's 128 x 3 x 32 x 32 is 2**19


def channel_stats(images: torch.Tensor, max_images: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of uint8 (N, C, H, W) images (a fixed subsample:
    the first `max_images`, or the first 512 of images decoded from disk)."""
    count = min(len(images), max_images if isinstance(images, torch.Tensor) else 512)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, count, 256):  # in chunks: 10,000 images at 224 px are 6 GB as floats
        chunk = images[start:min(start + 256, count)].to(torch.float64).div_(255)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    n = count * images.shape[2] * images.shape[3]
    mean = total / n
    std = ((squares - n * mean.square()) / max(n - 1, 1)).clamp_min(0).sqrt().clamp_min(1e-3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


class BatchAugment:
    """(uint8 images (B, C, H, W), int targets (B,)) -> (normalised float images at img_size,
    targets), where targets become class probabilities when MixUp/CutMix is on."""

    def __init__(
        self, recipe: Recipe, num_classes: int, preprocessing: Preprocessing,
        img_size: tuple[int, int], source_size: tuple[int, int],
    ) -> None:
        self.recipe = recipe
        self.num_classes = num_classes
        self.preprocessing = preprocessing
        self.img_size = tuple(img_size)
        # Other crops see the batch resized to img_size first, as evaluation resizes it.
        self.resize_first = recipe.crop != "rrc" and tuple(source_size) != self.img_size
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        # Small batches on the CPU: many short ops, each faster on one thread than split.
        small = images.device.type == "cpu" and images.numel() < SMALL_BATCH
        with torch_threads(1) if small else contextlib.nullcontext():
            return self._augment(images, targets)

    def _augment(self, images: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        recipe, prep = self.recipe, self.preprocessing
        if self.resize_first:
            images = resize_crop(images, self.img_size, prep.crop_pct, prep.interpolation)
        x = self.geometry(images.float().div_(255))
        if recipe.randaugment:
            x = apply_colour_ops(x, self._ops[0], self._ops[1], recipe.randaug_magnitude)
        x = self.normalise(x)
        if recipe.random_erasing > 0:
            x = erase(x, recipe.random_erasing)
        mixers = [m for m, alpha in (("mixup", recipe.mixup), ("cutmix", recipe.cutmix)) if alpha]
        if mixers and float(torch.rand(())) < recipe.mix_prob:
            which = mixers[int(torch.randint(len(mixers), ()))]
            x, targets = mix(x, targets, self.num_classes, which,
                             recipe.mixup if which == "mixup" else recipe.cutmix)
        return x, targets

    def geometry(self, x: torch.Tensor) -> torch.Tensor:
        """Crop, flip and RandAugment's geometric ops in one resampling (skipped when there
        is nothing to do)."""
        recipe, count = self.recipe, x.shape[0]
        height, width = x.shape[-2:]
        if recipe.crop == "rrc":
            boxes = rrc_boxes(count, height, width, (recipe.crop_scale, 1.0))
        elif recipe.crop == "pad" and recipe.pad > 0:
            boxes = shift_boxes(count, height, width, recipe.pad)
        else:
            boxes = whole_boxes(count, height, width)
        flips = torch.rand(count) < 0.5 if recipe.hflip else torch.zeros(count, dtype=torch.bool)
        inverse = None
        if recipe.randaugment:
            self._ops = draw_ops(count, recipe.randaug_ops)
            geometric = torch.tensor([OPS.index(name) for name in GEOMETRIC])
            if bool(torch.isin(self._ops[0], geometric).any()):
                inverse = geometric_inverse(*self._ops, recipe.randaug_magnitude, self.img_size)
        still = recipe.crop == "none" or (recipe.crop == "pad" and recipe.pad == 0)
        if still and not bool(flips.any()) and inverse is None and (height, width) == self.img_size:
            return x
        return resample(x, boxes, flips, inverse, self.img_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel, for x in [0, 1]."""
        if x.device not in self._stats:
            shape = (1, -1, 1, 1)
            self._stats[x.device] = (
                torch.tensor(self.preprocessing.mean, device=x.device).view(shape),
                torch.tensor(self.preprocessing.std, device=x.device).view(shape))
        mean, std = self._stats[x.device]
        return x.sub_(mean).div_(std)  # x is this batch's own float copy


def erase_boxes(count: int, height: int, width: int, probability: float,
                scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3),
                tries: int = 10) -> torch.Tensor:
    """Boxes (top, left, h, w) of torchvision's `RandomErasing`: with `probability`, the first
    of `tries` (area, log-aspect) draws that fits strictly inside the image; (0, 0, 0, 0) for
    images left alone."""
    area = height * width
    target = area * torch.empty(count, tries).uniform_(*scale)
    aspect = torch.exp(torch.empty(count, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    h = torch.sqrt(target * aspect).round()
    w = torch.sqrt(target / aspect).round()
    fits = (h < height) & (w < width)
    first = fits.float().argmax(dim=1)
    rows = torch.arange(count)
    h, w = h[rows, first], w[rows, first]
    top = torch.floor(torch.rand(count) * (height - h + 1))
    left = torch.floor(torch.rand(count) * (width - w + 1))
    chosen = (torch.rand(count) < probability) & fits.any(dim=1)
    boxes = torch.stack([top, left, h, w], dim=1)
    return torch.where(chosen[:, None], boxes, torch.zeros_like(boxes))


def erase(x: torch.Tensor, probability: float) -> torch.Tensor:
    """Zero a random box of each image with `probability` (on normalised images: the mean)."""
    count, _, height, width = x.shape
    boxes = erase_boxes(count, height, width, probability).to(x.device)
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return x.masked_fill(inside[:, None], 0.0)


def mix(x: torch.Tensor, targets: torch.Tensor, num_classes: int, kind: str, alpha: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix of the batch with itself rolled by one, as torchvision's v2.MixUp and
    v2.CutMix do: one Beta(alpha, alpha) draw per batch; targets become probabilities."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    rolled = x.roll(1, 0)
    if kind == "cutmix":
        height, width = x.shape[-2:]
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        half = 0.5 * math.sqrt(1 - lam)
        half_h, half_w = int(half * height), int(half * width)
        y1, y2 = max(cy - half_h, 0), min(cy + half_h, height)
        x1, x2 = max(cx - half_w, 0), min(cx + half_w, width)
        x = x.clone()
        x[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
        lam = 1.0 - (x2 - x1) * (y2 - y1) / (height * width)
    else:
        x = x.lerp(rolled, 1 - lam)  # lam * x + (1 - lam) * rolled
    one_hot = torch.nn.functional.one_hot(targets, num_classes).float()
    return x, one_hot * lam + one_hot.roll(1, 0) * (1 - lam)
