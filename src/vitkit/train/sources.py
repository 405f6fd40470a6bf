"""Training data through `vitkit.data.load_splits`, and the defaults that depend on it: a
small ViT suited to the image size, and recipe settings for tiny images and digits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data import ImageTensorDataset, load_splits


@dataclass
class Splits:
    train: ImageTensorDataset
    val: ImageTensorDataset | None
    test: ImageTensorDataset | None
    name: str


def load_data(source: str, *, img_size: int | None = None, in_chans: int | None = None,
              val_split: float | None = None, seed: int = 0, data_dir: str | None = None,
              progress: bool = True) -> Splits:
    """The train/val/test splits of `source` (see `vitkit.data.load_splits`)."""
    splits = load_splits(source, img_size=img_size, in_chans=in_chans, val_split=val_split,
                         seed=seed, data_dir=data_dir, progress=progress)
    return Splits(splits.train, splits.val, splits.test, splits.name)


def default_model(image_shape: tuple[int, int, int], num_classes: int,
                  img_size: int | None = None) -> tuple[str, dict[str, Any]]:
    """A small ViT preset and config overrides suited to images of `image_shape` (C, H, W):
    patch 2 up to 16 px, patch 4 up to 64 px, else a ViT-S/16 at 224 px."""
    chans, height, width = image_shape
    side = img_size or max(height, width)
    if side <= 16:
        name, patch = "vit_digits_patch2_8", 2
    elif side <= 64:
        name, patch = "vit_cifar_patch4_32", 4
    else:
        name, patch, side = "vit_small_patch16_224", 16, img_size or 224
    if img_size and img_size % patch:
        raise ValueError(f"image size {img_size} is not divisible by the patch size {patch} of "
                         f"{name}; use a multiple of {patch}")
    side = -(-side // patch) * patch  # round up to a multiple of the patch size
    return name, {"img_size": side, "in_chans": chans, "num_classes": num_classes}


# small-data settings for tiny images (<= 16 px), where crops, RandAugment, erasing and
# MixUp/CutMix destroy the content: 1-pixel shifts only (what `vitkit demo` uses; 0.98 on
# digits). Command-line options still override them.
TINY_IMAGE_RECIPE: dict[str, Any] = dict(
    batch_size=64, lr=3e-3, warmup_epochs=3, crop="pad", pad=1, randaugment=False, mixup=0.0,
    cutmix=0.0, random_erasing=0.0, drop_path=0.0, ema=False, grad_clip=0.0,
)


def recipe_defaults(name: str, image_shape: tuple[int, int, int], source: str) -> dict[str, Any]:
    """Data-dependent recipe defaults: no flips for digits, gentle augmentation for tiny images."""
    defaults: dict[str, Any] = {}
    if name == "small-data" and max(image_shape[1:]) <= 16:
        defaults.update(TINY_IMAGE_RECIPE)
    if source == "digits":
        defaults["hflip"] = False  # a mirrored digit is another symbol
    return defaults
