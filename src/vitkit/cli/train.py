"""`vitkit train --data SRC --out DIR`: train a ViT from scratch (small-data recipe by default)."""

from __future__ import annotations

import argparse

from .recipe_args import (
    add_recipe_options,
    add_run_options,
    parse_model_args,
    recipe_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a ViT from scratch on your images")
    add_run_options(parser)
    add_recipe_options(parser, "small-data")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .training import check_out_dir, hold_run_folder

    check_out_dir(args.out)
    with hold_run_folder(args.out):  # a second run into --out stops here, at once
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from vitkit import create_model
    from vitkit.data import load_splits
    from vitkit.models.config import RESNET_PRESETS
    from vitkit.train.distributed import is_main_process

    from .training import (
        capped_batch,
        chosen_model,
        default_model,
        device_type,
        model_overrides,
        recipe_defaults,
        run_training,
    )

    extra = parse_model_args(args.model_arg)
    chosen_model(args.model, args.img_size, extra)
    recipe_from_args(args)  # a bad --recipe or recipe.json fails before any decoding
    splits = load_splits(args.data, img_size=args.img_size, val_split=args.val_split,
                         seed=args.seed, data_dir=args.data_dir, progress=not args.no_progress,
                         memory_budget=_gib(args.memory_budget))
    if args.model:
        name = args.model
        config = {"num_classes": splits.train.num_classes,
                  "in_chans": splits.train.image_shape[0],
                  **({"img_size": args.img_size} if args.img_size else {})}
        if name in RESNET_PRESETS and not args.img_size:  # a CNN has no native size: the data's
            config["img_size"] = max(splits.train.image_shape[1:])
    else:
        name, config = default_model(splits.train.image_shape, splits.train.num_classes,
                                     args.img_size, len(splits.train), device_type(args))
    recipe = recipe_from_args(
        args, **recipe_defaults(args.recipe, splits.train.image_shape, splits.name))
    recipe = capped_batch(recipe, args, len(splits.train))
    from vitkit.models import get_config

    embed_dim = getattr(get_config(name), "embed_dim", None)  # None for a CNN baseline
    torch.manual_seed(args.seed)
    embed_dim = extra.get("embed_dim", embed_dim)
    model = create_model(name, **{**config, **model_overrides(recipe, embed_dim), **extra})
    if is_main_process():
        patch = getattr(model.config, "patch_size", None)
        print(f"model {model.meta.name} ({sum(p.numel() for p in model.parameters()):,} "
              f"parameters), img_size {model.config.img_size}"
              + (f", patch {patch}" if patch else ""))
    summary = run_training(model, splits, recipe, args)
    return 0 if summary["finished"] else 3


def _gib(value: float | None) -> int | None:
    return None if value is None else int(value * 2**30)
