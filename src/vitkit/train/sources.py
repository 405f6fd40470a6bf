"""Where training data comes from: `vitkit.data.load_splits` when present, else a small
adapter for `digits` and image folders (train/<class>/*, with val/ or test/ beside it).
Also picks a default model suited to the data's image size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import ImageTensorDataset, load_digits


@dataclass
class Splits:
    train: ImageTensorDataset
    val: ImageTensorDataset | None
    test: ImageTensorDataset | None
    name: str


def load_data(source: str, *, img_size: int | None = None, in_chans: int | None = None,
              val_split: float | None = None, seed: int = 0, data_dir: str | None = None,
              progress: bool = True) -> Splits:
    """The train/val/test splits of `source` as in-memory uint8 datasets."""
    try:
        from ..data import load_splits  # the full data layer, when it is installed
    except ImportError:
        load_splits = None
    if load_splits is not None:
        splits = load_splits(source, img_size=img_size, in_chans=in_chans, val_split=val_split,
                             seed=seed, data_dir=data_dir, progress=progress)
        return Splits(splits.train, splits.val, splits.test, splits.name)
    if source == "digits":
        return Splits(load_digits("train"), None, load_digits("test"), "digits")
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no data at {source!r}: give an image folder (train/<class>/...) or 'digits'"
        )
    train_dir = root / "train" if (root / "train").is_dir() else root
    train = _read_folder(train_dir, img_size, in_chans, None)
    size = tuple(train.images.shape[-2:])
    others = {name: _read_folder(root / name, size, train.images.shape[1], train.classes)
              for name in ("val", "test") if (root / name).is_dir()}
    return Splits(train, others.get("val"), others.get("test"), root.name)


def _read_folder(folder: Path, img_size: Any, in_chans: int | None,
                 classes: list[str] | None) -> ImageTensorDataset:
    """Decode folder/<class>/* into one uint8 tensor; undecodable files are skipped and listed."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = classes or found
    if not classes:
        raise ValueError(f"{folder} has no class folders; expected {folder}/<class>/<image>")
    if len(classes) < 2:
        raise ValueError(f"{folder} has only one class ({classes[0]}); training needs two or more")
    images, targets, skipped = [], [], []
    size = None if img_size is None else (
        (img_size, img_size) if isinstance(img_size, int) else tuple(img_size))
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if not path.is_file():
                continue
            try:
                with Image.open(path) as image:
                    mode = "L" if in_chans == 1 else "RGB"
                    tensor = TF.pil_to_tensor(image.convert(mode))
            except Exception as error:  # any undecodable file is skipped, never fatal
                skipped.append((str(path), f"{type(error).__name__}: {error}"))
                continue
            size = size or tuple(tensor.shape[-2:])
            if tuple(tensor.shape[-2:]) != size:
                tensor = TF.resize(tensor, list(size), antialias=True)
            images.append(tensor)
            targets.append(label)
    if not images:
        raise ValueError(f"no readable images under {folder}")
    return ImageTensorDataset(torch.stack(images), torch.tensor(targets), list(classes), skipped)


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
