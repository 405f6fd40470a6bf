"""`vitkit pretrain --objective masked-patch --data SRC --out DIR`: self-supervised
pre-training of a ViT on unlabelled images by masked patch prediction (paper Section 4.6);
OUT/checkpoint is then a ViT for `vitkit finetune --pretrained OUT/checkpoint`."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_options, add_run_options


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
    from .training import run_training

    return run_training(args, objective=args.objective)
