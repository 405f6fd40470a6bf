"""What `vitkit train` and `vitkit finetune` share: load data, train, evaluate on the test
split, report. Kept apart from argument parsing so tests can call it directly."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..models import VisionTransformer
from .checkpoint import TrainingError
from .distributed import is_main_process
from .recipes import Recipe
from .sources import Splits
from .trainer import TrainRun, evaluate_top1, train

log = logging.getLogger("vitkit")


def model_overrides(recipe: Recipe, embed_dim: int) -> dict:
    """The config fields a recipe sets: stochastic depth, dropout, the representation layer."""
    overrides: dict = {"drop_path_rate": recipe.drop_path, "drop_rate": recipe.dropout}
    if recipe.representation_size is not None:
        size = recipe.representation_size
        overrides["representation_size"] = embed_dim if size == -1 else (size or None)
    return overrides


def run_training(model: VisionTransformer, splits: Splits, recipe: Recipe,
                 args: argparse.Namespace, mean: list[float] | None = None,
                 std: list[float] | None = None) -> dict:
    """Train, then evaluate the saved checkpoint on the test split; returns the summary."""
    out = Path(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    main = is_main_process()  # under torchrun, rank 0 alone reports and writes
    if main:
        for path, reason in splits.train.skipped:
            log.warning("skipped %s: %s", path, reason)
        print(f"recipe {recipe.name}: " + json.dumps(
            {k: v for k, v in recipe.to_dict().items() if k != "name"}))
        print(f"data {splits.name}: {len(splits.train)} train, "
              f"{len(splits.val) if splits.val else 0} val, "
              f"{len(splits.test) if splits.test else 0} test images, "
              f"{splits.train.num_classes} classes, {len(splits.train.skipped)} skipped")
    run = TrainRun(
        model=model, train_set=splits.train, val_set=splits.val, recipe=recipe, out_dir=out,
        seed=args.seed, fp32=args.fp32, device=args.device, mean=mean, std=std,
        save_every=args.save_every, resume=args.resume, stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    try:
        result = train(run)
    except TrainingError as error:
        from ..cli.main import CommandError

        raise CommandError(str(error)) from error
    summary = {"steps": result.steps, "epochs": round(result.epochs, 3),
               "seconds": round(result.seconds, 1),
               "images_per_s": round(result.images_per_s, 1),
               "best_val_top1": result.best_val_top1, "finished": result.finished,
               "skipped_images": len(splits.train.skipped)}
    if not main:
        return summary
    if result.finished and splits.test is not None and result.checkpoint.exists():
        from ..weights import load_pretrained
        from .augment import Normalize

        best = load_pretrained(result.checkpoint)
        prep = best.preprocessing
        normalize = Normalize(prep["mean"], prep["std"], best.config.img_size)
        summary["test_top1"] = evaluate_top1(best, splits.test, normalize)
    if result.finished:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"checkpoint: {result.checkpoint} (load with vitkit.create_model(None, "
          f"pretrained={str(result.checkpoint)!r}))")
    return summary
