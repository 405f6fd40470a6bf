"""`vitkit finetune --pretrained SRC --data SRC --out DIR`: fine-tune pretrained weights with
the paper's recipe (SGD, clipping at norm 1, zero-initialised head, optional higher resolution)."""

from __future__ import annotations

import argparse

from .recipe_args import (
    add_recipe_options,
    add_run_options,
    parse_model_args,
    recipe_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("finetune", help="fine-tune pretrained weights on your images")
    parser.add_argument("--pretrained", required=True,
                        help="a checkpoint folder or file, or a hub id")
    add_run_options(parser)
    add_recipe_options(parser, "paper-finetune")
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
    from vitkit.train.distributed import is_main_process

    from .training import capped_batch, model_overrides, run_training

    recipe = recipe_from_args(args)
    torch.manual_seed(args.seed)
    probe = create_model(args.model, pretrained=args.pretrained)  # to learn size and channels
    img_size = args.img_size or probe.config.img_size[0]
    splits = load_splits(args.data, img_size=img_size, in_chans=probe.config.in_chans,
                         val_split=args.val_split, seed=args.seed, data_dir=args.data_dir,
                         progress=not args.no_progress, memory_budget=_gib(args.memory_budget))
    recipe = capped_batch(recipe, args, len(splits.train))
    if splits.name == "digits" and args.hflip is None:
        recipe = recipe.replace(hflip=False)
    overrides = {"num_classes": splits.train.num_classes, "img_size": img_size,
                 **model_overrides(recipe, getattr(probe.config, "embed_dim", None))}
    overrides.update(parse_model_args(args.model_arg))
    model = create_model(args.model, pretrained=args.pretrained, **overrides)
    if recipe.zero_head:
        model.reset_classifier(splits.train.num_classes)  # Section 3.2: a zero head
    prep = model.meta.preprocessing
    if is_main_process():
        height, width = model.config.img_size
        print(f"fine-tuning {args.pretrained} at {height}x{width} "
              f"for {splits.train.num_classes} classes")
    model.train()
    summary = run_training(model, splits, recipe, args, mean=list(prep.mean),
                           std=list(prep.std))
    return 0 if summary["finished"] else 3


def _gib(value: float | None) -> int | None:
    return None if value is None else int(value * 2**30)
