"""`vitkit pretrain --objective masked-patch --data SRC --out DIR`: self-supervised
pre-training of a ViT on unlabelled images by masked patch prediction (paper Section 4.6);
OUT/checkpoint is then a ViT for `vitkit finetune --pretrained OUT/checkpoint`."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_options, add_run_options, parse_model_args, recipe_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "pretrain", help="self-supervised pre-training on unlabelled images (masked patches)",
        description="Pre-train a ViT without labels: half of the patch embeddings are corrupted "
        "(80%% to a learned [mask] embedding, 10%% to another patch's, 10%% kept) and the model "
        "predicts each corrupted patch's mean colour in 3 bits per channel. --data is a folder "
        "of images (class sub-folders optional, labels ignored) or any training source.")
    parser.add_argument("--objective", choices=("masked-patch",), default="masked-patch")
    add_run_options(parser)
    add_recipe_options(parser, "masked-patch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vitkit import create_model
    from vitkit.data import DataSplits, load_unlabelled
    from vitkit.models import MaskedPatchPrediction
    from vitkit.train.distributed import is_main_process
    from vitkit.train.objectives import MaskedPatch

    from .training import default_model, model_overrides, run_training

    images = load_unlabelled(args.data, img_size=args.img_size, data_dir=args.data_dir,
                             progress=not args.no_progress)
    name, config = default_model(images.image_shape, 0, args.img_size)
    if args.model:
        name = args.model
        config = {"in_chans": config["in_chans"],
                  **({"img_size": args.img_size} if args.img_size else {})}
    recipe = recipe_from_args(args)
    torch.manual_seed(args.seed)
    vit = create_model(name, **{**config, **model_overrides(recipe, 0),
                                **parse_model_args(args.model_arg), "num_classes": 0,
                                "representation_size": None})
    if is_main_process():
        print(f"pre-training {name} ({sum(p.numel() for p in vit.parameters()):,} parameters) "
              f"by masked patch prediction on {len(images)} images")
    splits = DataSplits(train=images, val=None, test=None, name=args.data)
    summary = run_training(MaskedPatchPrediction(vit), splits, recipe, args,
                           objective=MaskedPatch())
    return 0 if summary["finished"] else 3
