"""`vitkit finetune --pretrained SRC --data SRC --out DIR`: fine-tune pretrained weights with
the paper's recipe (SGD, clipping at norm 1, zero-initialised head, optional higher resolution)."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_options, add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("finetune", help="fine-tune pretrained weights on your images")
    parser.add_argument("--pretrained", required=True,
                        help="a checkpoint folder or file, or a hub id")
    add_run_options(parser)
    add_recipe_options(parser, "paper-finetune")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .training import run_training

    return run_training(args, pretrained=args.pretrained)
