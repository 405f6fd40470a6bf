"""The default plan of `vitkit train` and `vitkit finetune`: a batch, an image size, a model
and a number of epochs that fit the data and the device when not given, and the one line,
printed before training, that states it with a time estimated from a few timed steps."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from vitkit.models import VisionTransformer
    from vitkit.train import Recipe

log = logging.getLogger("vitkit")

SMALL_DATA = 10_000  # training images below which a ViT from scratch stays far from fine-tuned
LARGE_DATA = 20_000  # training images from which a GPU run gets ViT-S/16 at 224
MIN_STEPS_PER_EPOCH = 4
# The longest a default run is planned to take; --epochs overrides it.
TIME_BUDGET_S = {"cpu": 30 * 60.0, "cuda": 3 * 3600.0}
MIN_EPOCHS = 10


def default_batch(recipe_batch: int, train_size: int) -> int:
    """The recipe's batch, or on small data the largest power of two that still gives
    MIN_STEPS_PER_EPOCH steps an epoch (never larger than the data)."""
    if recipe_batch * MIN_STEPS_PER_EPOCH <= train_size:
        return recipe_batch
    batch = 1
    while batch * 2 * MIN_STEPS_PER_EPOCH <= train_size and batch * 2 <= recipe_batch:
        batch *= 2
    return batch


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


def step_seconds(model: VisionTransformer, batch: int, device: torch.device,
                 dtype: torch.dtype, repeats: int = 2) -> float:
    """Seconds of one optimizer step of `batch` images, timed on random inputs: one untimed
    and `repeats` timed forward+backward passes of up to 8 images, scaled to the batch. The
    model's weights are untouched (no optimizer step) and its gradients cleared after."""
    import torch

    micro = min(batch, 8)
    config = model.config
    images = torch.randn(micro, config.in_chans, *config.img_size, device=device)
    was_training = model.training
    model.to(device).train()
    rng = torch.random.get_rng_state()
    try:
        seconds = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with torch.autocast(device.type, torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = model(images)  # logits, or (logits, targets) of a pre-training objective
                loss = (out[0] if isinstance(out, tuple) else out).float().logsumexp(-1).mean()
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.random.set_rng_state(rng)
    return min(seconds[1:]) * batch / micro


def fit_epochs(recipe: Recipe, seconds_per_epoch: float, device_type: str) -> float:
    """The recipe's epochs, or fewer (not under MIN_EPOCHS) when they would take longer than
    the device's TIME_BUDGET_S."""
    budget = TIME_BUDGET_S.get(device_type, TIME_BUDGET_S["cpu"])
    affordable = max(MIN_EPOCHS, int(budget / max(seconds_per_epoch, 1e-9)))
    return min(recipe.epochs, float(affordable))


def describe_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_line(model: VisionTransformer, recipe: Recipe, train_size: int, device: torch.device,
              step_s: float) -> str:
    """One line: model, size, epochs, batch, steps and the estimated time."""
    steps_per_epoch = max(train_size // recipe.batch_size, 1)
    steps = max(1, round(recipe.epochs * steps_per_epoch))
    height, width = model.config.img_size
    size = f"{height} px" if height == width else f"{height}x{width} px"
    return (f"plan: {model.meta.name or 'model'} at {size}, {recipe.epochs:g} epochs of "
            f"{train_size} images, batch {recipe.batch_size} ({steps} steps); about "
            f"{describe_time(steps * step_s)} on {device.type} "
            f"({step_s:.2f} s/step, from timed steps)")


def small_data_hint(train_size: int, data: str) -> str | None:
    """The paper's point, for small data trained from scratch: fine-tune pretrained weights."""
    if train_size >= SMALL_DATA:
        return None
    return (f"hint: {train_size} images are few for a ViT trained from scratch (the paper's "
            "ViTs need large-scale pre-training); for good accuracy fine-tune pretrained "
            "weights: vitkit finetune --pretrained "
            f"timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k --data {data} --out RUN")
