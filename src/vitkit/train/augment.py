"""Augmentation of uint8 image batches with torchvision's transforms v2, then normalisation.

Images stay in one uint8 tensor in memory; each training step augments only its own batch,
per image where the transform must differ per image (crops, flips, RandAugment, erasing) and
per batch for MixUp/CutMix. On 2 CPU cores this keeps the model, not the data, the bottleneck.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torchvision.transforms import v2

from .recipes import Recipe


def channel_stats(images: torch.Tensor, max_images: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of a uint8 (N, C, H, W) tensor (a fixed subsample)."""
    sample = images[:max_images].float().div_(255)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Normalize:
    """uint8 (B, C, H, W) -> float (x / 255 - mean) / std, resized to `img_size` if needed."""

    def __init__(self, mean: list[float], std: list[float], img_size: tuple[int, int]) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.img_size = tuple(img_size)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        if tuple(x.shape[-2:]) != self.img_size:
            x = v2.functional.resize(x, list(self.img_size), antialias=True)
        return (x - self.mean) / self.std


class BatchAugment:
    """The recipe's training augmentation: (uint8 images, int targets) -> (normalised float
    images, targets), where targets become class probabilities when MixUp/CutMix is on.

    Randomness comes from torch's global generator, which the trainer seeds per step.
    """

    def __init__(
        self, recipe: Recipe, num_classes: int, mean: list[float], std: list[float],
        img_size: tuple[int, int], source_size: tuple[int, int],
    ) -> None:
        self.normalize = Normalize(mean, std, img_size)
        self.num_classes = num_classes
        per_image: list = []
        if recipe.crop == "rrc":
            per_image.append(
                v2.RandomResizedCrop(img_size, scale=(recipe.crop_scale, 1.0), antialias=True)
            )
        else:
            if tuple(source_size) != tuple(img_size):
                per_image.append(v2.Resize(img_size, antialias=True))
            if recipe.crop == "pad" and recipe.pad > 0:
                per_image.append(v2.RandomCrop(img_size, padding=recipe.pad))
        if recipe.hflip:
            per_image.append(v2.RandomHorizontalFlip())
        if recipe.randaugment:
            per_image.append(
                v2.RandAugment(num_ops=recipe.randaug_ops, magnitude=recipe.randaug_magnitude)
            )
        self.per_image = v2.Compose(per_image) if per_image else None
        self.erase = (
            v2.RandomErasing(p=recipe.random_erasing, value=0)
            if recipe.random_erasing > 0 else None
        )
        mixers = []
        if recipe.mixup > 0:
            mixers.append(v2.MixUp(alpha=recipe.mixup, num_classes=num_classes))
        if recipe.cutmix > 0:
            mixers.append(v2.CutMix(alpha=recipe.cutmix, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None
        self.mix_prob = recipe.mix_prob

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with _one_thread():  # small per-image ops run many times faster without threading
            if self.per_image is not None:
                images = torch.stack([self.per_image(image) for image in images])
            x = self.normalize(images)
            if self.erase is not None:
                x = torch.stack([self.erase(image) for image in x])
        if self.mix is not None and torch.rand(()) < self.mix_prob:
            x, targets = self.mix(x, targets)
        return x, targets
