"""What `vitkit train` and `vitkit finetune` share: the defaults that depend on the data (a
small ViT for small images, gentle augmentation for tiny ones), then train, evaluate the
best checkpoint on the test split, and report. Kept apart from argument parsing so tests
can call it directly."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vitkit.data import DataSplits
    from vitkit.models import VisionTransformer
    from vitkit.train import Recipe

log = logging.getLogger("vitkit")

# small-data settings for tiny images (<= 16 px), where crops, RandAugment, erasing and
# MixUp/CutMix destroy the content: 1-pixel shifts only (what `vitkit demo` uses; 0.98 on
# digits). Command-line options still override them.
TINY_IMAGE_RECIPE: dict[str, Any] = dict(
    batch_size=64, lr=3e-3, warmup_epochs=3, crop="pad", pad=1, randaugment=False, mixup=0.0,
    cutmix=0.0, random_erasing=0.0, drop_path=0.0, ema=False, grad_clip=0.0,
)


def default_model(image_shape: tuple[int, int, int], num_classes: int,
                  img_size: int | None = None, train_size: int | None = None,
                  device_type: str = "cuda") -> tuple[str, dict[str, Any]]:
    """A small ViT preset and config overrides suited to images of `image_shape` (C, H, W):
    patch 2 up to 16 px, patch 4 up to 64 px, else a ViT/16 chosen for the amount of data
    and the device (`plan.large_image_model`; unknown size: ViT-S/16 at 224 px)."""
    chans, height, width = image_shape
    side = img_size or max(height, width)
    if side <= 16:
        name, patch = "vit_digits_patch2_8", 2
    elif side <= 64:
        name, patch = "vit_cifar_patch4_32", 4
    else:
        from .plan import large_image_model

        name, planned = large_image_model(train_size, device_type)
        patch, side = 16, img_size or planned
    if img_size and img_size % patch:
        raise ValueError(f"image size {img_size} is not divisible by the patch size {patch} of "
                         f"{name}; use a multiple of {patch}")
    side = -(-side // patch) * patch  # round up to a multiple of the patch size
    return name, {"img_size": side, "in_chans": chans, "num_classes": num_classes}


def check_out_dir(out: str) -> None:
    """Refuse, before any work, an --out that is a file (a run folder is a folder)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder; choose a folder "
                         "for the run")


def hold_run_folder(out: str) -> contextlib.AbstractContextManager:
    """The run folder's lock for the command's life (rank 0 alone under torchrun), so two
    runs into one --out cannot both proceed; see `vitkit.train.lock`."""
    from vitkit.train.distributed import is_main_process
    from vitkit.train.lock import run_folder_lock

    return run_folder_lock(out) if is_main_process() else contextlib.nullcontext()


def chosen_model(name: str | None, img_size: int | None, model_args: dict[str, Any]) -> None:
    """Check --model, --img-size and --model-arg patch_size together before any data is read:
    an unknown name, or an image size the patch of the model actually used does not divide."""
    if name is None:
        return
    from vitkit.models import get_config

    config = get_config(name)  # an unknown name is a ValueError naming close matches
    patch = model_args.get("patch_size", getattr(config, "patch_size", None))
    if patch is None:  # a CNN: any size
        return
    patch = int(patch)  # type: ignore[arg-type]
    if img_size and img_size % patch:
        raise ValueError(f"image size {img_size} is not divisible by the patch size {patch} of "
                         f"{name}; use a multiple of {patch}")


def device_type(args: argparse.Namespace) -> str:
    """'cuda' or 'cpu': where the run will compute (--device, else the best there is)."""
    if args.device:
        return str(args.device).split(":")[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def capped_batch(recipe: Recipe, args: argparse.Namespace, train_size: int) -> Recipe:
    """The recipe with its batch fitted to small data (`plan.default_batch`) unless
    --batch-size or a recipe.json gave it."""
    from .plan import default_batch
    from .recipe_args import is_recipe_file

    if args.batch_size is not None or is_recipe_file(args.recipe):
        return recipe
    batch = default_batch(recipe.batch_size, train_size)
    if batch == recipe.batch_size:
        return recipe
    accum = recipe.accum_steps if batch % recipe.accum_steps == 0 else 1
    return recipe.replace(batch_size=batch, accum_steps=accum)


def recipe_defaults(name: str, image_shape: tuple[int, int, int], source: str) -> dict[str, Any]:
    """Data-dependent recipe defaults: no flips for digits, gentle augmentation for tiny images."""
    defaults: dict[str, Any] = {}
    if name == "small-data" and max(image_shape[1:]) <= 16:
        defaults.update(TINY_IMAGE_RECIPE)
    if source == "digits":
        defaults["hflip"] = False  # a mirrored digit is another symbol
    return defaults


def model_overrides(recipe: Recipe, embed_dim: int) -> dict:
    """The config fields a recipe sets: stochastic depth, dropout, the representation layer."""
    overrides: dict = {"drop_path_rate": recipe.drop_path, "drop_rate": recipe.dropout}
    if recipe.representation_size is not None:
        size = recipe.representation_size
        overrides["representation_size"] = embed_dim if size == -1 else (size or None)
    return overrides


def run_training(model: VisionTransformer, splits: DataSplits, recipe: Recipe,
                 args: argparse.Namespace, mean: list[float] | None = None,
                 std: list[float] | None = None, objective: Any = None) -> dict:
    """Train, then evaluate the saved checkpoint on the test split; returns the summary."""
    import torch

    from vitkit.infer import evaluate
    from vitkit.train import TrainRun, train
    from vitkit.train.distributed import is_main_process
    from vitkit.weights import load_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    main = is_main_process()  # under torchrun, rank 0 alone reports and writes
    recipe = fit_plan(model, splits, recipe, args, main)
    if main:
        _describe(splits, recipe)
    run = TrainRun(
        model=model, train_set=splits.train, val_set=splits.val, recipe=recipe,
        out_dir=Path(args.out), seed=args.seed, precision=args.precision, device=args.device,
        mean=mean, std=std, save_every=args.save_every, resume=args.resume,
        stop_after=args.stop_after, progress=not args.no_progress, log_every=args.log_every,
        compile=_choice(args.compile), data_on_device=_choice(args.data_on_device),
        workers=args.workers, decode_on_device=_choice(args.decode_on_device),
        objective=objective, grad_checkpointing=args.grad_checkpointing,
        fsdp=args.fsdp,
    )
    result = train(run)
    summary = {"steps": result.steps, "epochs": round(result.epochs, 3),
               "seconds": round(result.seconds, 1),  # this session's; with earlier ones:
               "seconds_total": round(result.total_seconds or result.seconds, 1),
               "images_per_s": round(result.images_per_s, 1),
               "best_val_top1": result.best_val_top1, "finished": result.finished,
               "skipped_images": skipped_count(splits)}
    if not main:
        return summary
    if result.finished and splits.test is not None and result.checkpoint.exists():
        best = load_pretrained(result.checkpoint)
        summary["test_top1"] = evaluate(best, splits.test)["top1"]
    if result.finished:
        (Path(args.out) / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"checkpoint: {result.checkpoint} (load with vitkit.create_model(None, "
          f"pretrained={str(result.checkpoint)!r}))")
    return summary


def _choice(value: str) -> bool | None:
    """'on'/'off'/'auto' as True/False/None."""
    return {"on": True, "off": False}.get(value)


def fit_plan(model: VisionTransformer, splits: DataSplits, recipe: Recipe,
             args: argparse.Namespace, main: bool = True) -> Recipe:
    """Fit what the user left to vitkit: the epochs to the device's time budget (not under
    torchrun, where every rank must agree), or on --resume the run's own epochs, batch and
    warmup. Then print the plan with an estimated time, and for small data from scratch the
    hint to fine-tune."""
    import os

    import torch

    from vitkit.device import default_device
    from vitkit.train.precision import training_dtype

    from .plan import fit_epochs, plan_line, small_data_hint, step_seconds
    from .recipe_args import fit_warmup, is_recipe_file, read_recipe

    saved, free = Path(args.out) / "recipe.json", not is_recipe_file(args.recipe)
    if args.resume and saved.exists():  # the schedule must stay the one the run started with
        before = read_recipe(str(saved))
        recipe = recipe.replace(**{key: getattr(before, key) for key in (
            "epochs", "batch_size", "warmup_epochs") if getattr(args, key, None) is None})
        free = False
    if not main:
        return recipe
    device = torch.device(args.device) if args.device else default_device()
    size = len(splits.train)
    dtype = training_dtype(model, args.precision, device, recipe.batch_size)
    step_s = step_seconds(model, recipe.batch_size, device, dtype)
    if free and args.epochs is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        epochs = fit_epochs(recipe, step_s * max(size // recipe.batch_size, 1), device.type)
        if epochs != recipe.epochs:
            recipe = fit_warmup(recipe.replace(epochs=epochs), args.warmup_epochs is not None)
    print(plan_line(model, recipe, size, device, step_s))
    photos = min(model.config.img_size) >= 64  # what pretrained ViTs are made for
    from_scratch = getattr(args, "command", "") == "train"
    hint = small_data_hint(size, args.data) if from_scratch and photos else None
    if hint:
        print(hint)
    return recipe


def _describe(splits: DataSplits, recipe: Recipe) -> None:
    """The recipe and the data, one line each, before training starts."""
    print(f"recipe {recipe.name}: " + json.dumps(
        {k: v for k, v in recipe.to_dict().items() if k != "name"}))
    print(f"data {splits.name}: {len(splits.train)} train, "
          f"{len(splits.val) if splits.val else 0} val, "
          f"{len(splits.test) if splits.test else 0} test images, "
          f"{splits.train.num_classes} classes, {skipped_count(splits)} skipped")


def skipped_count(splits: DataSplits) -> int:
    """Files left out as undecodable, over every split (each file counted once)."""
    paths = {path for split in (splits.train, splits.val, splits.test) if split is not None
             for path, _ in split.skipped}
    return len(paths)
