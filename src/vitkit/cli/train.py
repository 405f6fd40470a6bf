"""`vitkit train --data SRC --out DIR`: train a ViT from scratch (small-data recipe by default)."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_options, add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a ViT from scratch on your images")
    add_run_options(parser)
    add_recipe_options(parser, "small-data")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .training import run_training

    return run_training(args)
