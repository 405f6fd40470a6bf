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

from ..data.transforms import interpolation_mode, model_input, resize_crop
from ..models import Preprocessing
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


class BatchAugment:
    """The recipe's training augmentation: (uint8 images, int targets) -> (normalised float
    images, targets), where targets become class probabilities when MixUp/CutMix is on.

    Randomness comes from torch's global generator, which the trainer seeds per step.
    """

    def __init__(
        self, recipe: Recipe, num_classes: int, preprocessing: Preprocessing,
        img_size: tuple[int, int], source_size: tuple[int, int],
    ) -> None:
        self.preprocessing = preprocessing
        self.img_size = tuple(img_size)
        self.num_classes = num_classes
        per_image: list = []
        # Other crops see the batch resized to img_size first, as evaluation resizes it.
        self.resize_first = recipe.crop != "rrc" and tuple(source_size) != self.img_size
        if recipe.crop == "rrc":
            per_image.append(v2.RandomResizedCrop(
                img_size, scale=(recipe.crop_scale, 1.0), antialias=True,
                interpolation=interpolation_mode(preprocessing.interpolation)))
        else:
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
        if self.resize_first:
            prep = self.preprocessing
            images = resize_crop(images, self.img_size, prep.crop_pct, prep.interpolation)
        with _one_thread():  # small per-image ops run many times faster without threading
            if self.per_image is not None:
                images = torch.stack([self.per_image(image) for image in images])
            x = model_input(images, self.img_size, self.preprocessing, images.shape[1])
            if self.erase is not None:
                x = torch.stack([self.erase(image) for image in x])
        if self.mix is not None and torch.rand(()) < self.mix_prob:
            x, targets = self.mix(x, targets)
        return x, targets
