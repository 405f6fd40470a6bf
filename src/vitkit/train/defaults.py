"""The choices a training run makes when the caller leaves them open: a model for the size
and amount of the data, a recipe for tiny images, a batch that gives an epoch several steps,
epochs that fit a time budget, a warmup that fits a short run. Pure functions of the data,
the device and the recipe, so `vitkit.plan_training` and every command share them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .recipes import Recipe

log = logging.getLogger("vitkit")

SMALL_DATA = 10_000  # training images below which a ViT from scratch stays far from fine-tuned
LARGE_DATA = 20_000  # training images from which a GPU run gets ViT-S/16 at 224
MIN_STEPS_PER_EPOCH = 4
# The longest a default run is planned to take; `epochs` (or `time_budget`) overrides it.
TIME_BUDGET_S = {"cpu": 30 * 60.0, "cuda": 3 * 3600.0}
MIN_EPOCHS = 10
# The most of a run that warmup takes when the caller did not choose it (the paper's
# fine-tuning warms up for 1 of 10 epochs; DeiT for 5 of 300).
WARMUP_SHARE = 0.1

# small-data settings for tiny images (<= 16 px), where crops, RandAugment, erasing and
# MixUp/CutMix destroy the content: 1-pixel shifts only (0.98 on digits; what `vitkit demo`
# trains with). The caller's overrides still win.
TINY_IMAGE_RECIPE: dict[str, Any] = dict(
    batch_size=64, lr=3e-3, warmup_epochs=3, crop="pad", pad=1, randaugment=False, mixup=0.0,
    cutmix=0.0, random_erasing=0.0, drop_path=0.0, ema=False, grad_clip=0.0,
)


# -- the model ---------------------------------------------------------------------------------
def default_model(image_shape: tuple[int, int, int], num_classes: int,
                  img_size: int | None = None, train_size: int | None = None,
                  device_type: str = "cuda") -> tuple[str, dict[str, Any]]:
    """A small ViT preset and config overrides suited to images of `image_shape` (C, H, W):
    patch 2 up to 16 px, patch 4 up to 64 px, else a ViT/16 chosen for the amount of data
    and the device (`large_image_model`)."""
    chans, height, width = image_shape
    side = img_size or max(height, width)
    if side <= 16:
        name, patch = "vit_digits_patch2_8", 2
    elif side <= 64:
        name, patch = "vit_cifar_patch4_32", 4
    else:
        name, planned = large_image_model(train_size, device_type)
        patch, side = 16, img_size or planned
    check_patch_divides(img_size, patch, name)
    side = -(-side // patch) * patch  # round up to a multiple of the patch size
    return name, {"img_size": side, "in_chans": chans, "num_classes": num_classes}


def large_image_model(train_size: int | None, device_type: str) -> tuple[str, int]:
    """(preset, image side) for images over 64 px: ViT-S/16 at 224 for large data on a GPU,
    ViT-Ti/16 at 224 on a GPU or for large data, ViT-Ti/16 at 112 for small data on a CPU
    (ViT-S/16 at 224 trains at 3-4 images/s on a 2-core CPU)."""
    large = train_size is None or train_size >= LARGE_DATA
    if large and device_type == "cuda":
        return "vit_small_patch16_224", 224
    if large or device_type == "cuda":
        return "vit_tiny_patch16_224", 224
    return "vit_tiny_patch16_224", 112


def check_model_choice(name: str | None, img_size: int | None,
                       model_args: dict[str, Any]) -> None:
    """An unknown preset, or an `img_size` that the patch of the model actually built does
    not divide, is an error before any data is read."""
    if name is None:
        return
    from ..models import get_config

    config = get_config(name)  # an unknown name is a ValueError naming close matches
    patch = model_args.get("patch_size", getattr(config, "patch_size", None))
    if patch is not None:  # None: a CNN takes any size
        check_patch_divides(img_size, int(patch), name)


def check_patch_divides(img_size: int | None, patch: int, name: str) -> None:
    if img_size and img_size % patch:
        raise ValueError(f"img_size={img_size} is not divisible by the patch size {patch} of "
                         f"{name}; use a multiple of {patch}")


def model_overrides(recipe: Recipe, embed_dim: int | None) -> dict[str, Any]:
    """The config fields a recipe sets: stochastic depth, dropout, the representation layer."""
    overrides: dict[str, Any] = {"drop_path_rate": recipe.drop_path, "drop_rate": recipe.dropout}
    if recipe.representation_size is not None:
        size = recipe.representation_size
        overrides["representation_size"] = embed_dim if size == -1 else (size or None)
    return overrides


# -- the recipe --------------------------------------------------------------------------------
def data_recipe_defaults(recipe_name: str, image_shape: tuple[int, int, int],
                         source: str) -> dict[str, Any]:
    """Recipe values that depend on the data: gentle augmentation for tiny images under the
    small-data recipe, no flips for digits (a mirrored digit is another symbol)."""
    defaults: dict[str, Any] = {}
    if recipe_name == "small-data" and max(image_shape[1:]) <= 16:
        defaults.update(TINY_IMAGE_RECIPE)
    if source == "digits":
        defaults["hflip"] = False
    return defaults


def default_batch(recipe_batch: int, train_size: int) -> int:
    """The recipe's batch, or on small data the largest power of two that still gives
    MIN_STEPS_PER_EPOCH steps an epoch (never larger than the data)."""
    if recipe_batch * MIN_STEPS_PER_EPOCH <= train_size:
        return recipe_batch
    batch = 1
    while batch * 2 * MIN_STEPS_PER_EPOCH <= train_size and batch * 2 <= recipe_batch:
        batch *= 2
    return batch


def fit_batch(recipe: Recipe, train_size: int) -> Recipe:
    """The recipe with its batch fitted to small data (`default_batch`), gradient
    accumulation dropped where the new batch no longer divides."""
    batch = default_batch(recipe.batch_size, train_size)
    if batch == recipe.batch_size:
        return recipe
    accum = recipe.accum_steps if batch % recipe.accum_steps == 0 else 1
    return recipe.replace(batch_size=batch, accum_steps=accum)


def fit_epochs(recipe: Recipe, seconds_per_epoch: float, budget_s: float) -> float:
    """The recipe's epochs, or fewer (not under MIN_EPOCHS) when they would take longer than
    `budget_s` seconds."""
    affordable = max(MIN_EPOCHS, int(budget_s / max(seconds_per_epoch, 1e-9)))
    return min(recipe.epochs, float(affordable))


def fit_warmup(recipe: Recipe, given: bool) -> Recipe:
    """The recipe's warmup capped to WARMUP_SHARE of a short run, unless the caller chose it;
    a warning when the caller's own warmup takes more than half of the run (the learning
    rate then barely decays, or never does)."""
    if not given and recipe.warmup_epochs > WARMUP_SHARE * recipe.epochs:
        return recipe.replace(warmup_epochs=round(WARMUP_SHARE * recipe.epochs, 4))
    if given and recipe.warmup_epochs > 0.5 * recipe.epochs:
        decay = max(recipe.epochs - recipe.warmup_epochs, 0)
        log.warning(
            "warmup_epochs=%g is more than half of the %g epochs: the learning rate decays "
            "over the last %g epochs only%s; use a shorter warmup or more epochs=",
            recipe.warmup_epochs, recipe.epochs, decay,
            " (not at all: the run ends at the peak)" if decay == 0 else "")
    return recipe


def is_recipe_file(recipe: str | Path) -> bool:
    """Whether `recipe` names a file (a saved recipe.json) rather than a named recipe."""
    import os

    text = str(recipe)
    return isinstance(recipe, Path) or text.endswith(".json") or os.path.sep in text or (
        os.path.isfile(text))


def read_recipe(path: str | Path) -> Recipe:
    """A recipe.json written by an earlier run (`Recipe.to_json`), checked field by field."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"recipe={str(path)!r}: no such file") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"recipe={str(path)!r} is not a JSON recipe ({error})") from error
    if not isinstance(document, dict):
        raise ValueError(f"recipe={str(path)!r} holds a JSON {type(document).__name__}, "
                         "not a recipe")
    try:
        return Recipe.from_dict(document)
    except (TypeError, ValueError) as error:
        raise ValueError(f"recipe={str(path)!r}: {error}") from error


# -- what the plan says ------------------------------------------------------------------------
def describe_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def small_data_hint(train_size: int, data: str) -> str | None:
    """The paper's point, for small data trained from scratch: fine-tune pretrained weights."""
    if train_size >= SMALL_DATA:
        return None
    return (f"hint: {train_size} images are few for a ViT trained from scratch (the paper's "
            "ViTs need large-scale pre-training); for good accuracy fine-tune pretrained "
            "weights: vitkit finetune --pretrained "
            f"timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k --data {data} --out RUN")
