"""Command-line options generated from the Recipe fields, so every recipe value can be
overridden (`--lr`, `--no-hflip`, `--mixup 0`, ...), plus the options every training command
shares."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import typing
from pathlib import Path

from vitkit.device import PRECISIONS
from vitkit.train.recipes import Recipe, get_recipe, list_recipes

HELP = {
    "epochs": "training epochs (fractions allowed)",
    "batch_size": "global batch per optimizer step",
    "lr": "peak learning rate",
    "accum_steps": "gradient accumulation: micro-batches per step",
    "grad_clip": "clip gradients to this global norm (0: off)",
    "representation_size": "pre-logits layer width (-1: embed_dim, 0: none)",
}


def add_recipe_options(parser: argparse.ArgumentParser, default_recipe: str) -> None:
    """--recipe plus one option per Recipe field (default: the recipe's value)."""
    parser.add_argument("--recipe", default=default_recipe, metavar="NAME_OR_JSON",
                        help=f"named hyperparameters ({', '.join(list_recipes())}; default "
                        f"{default_recipe}), or the recipe.json of an earlier run to repeat it")
    group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    hints = typing.get_type_hints(Recipe)
    for field in dataclasses.fields(Recipe):
        if field.name == "name":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=HELP.get(field.name))
        else:
            base = {int: int, float: float, str: str}.get(kind, int)
            group.add_argument(flag, type=base, default=None, help=HELP.get(field.name),
                               metavar=field.name.upper())


def recipe_from_args(args: argparse.Namespace, **defaults: object) -> Recipe:
    """The chosen recipe with command-line overrides; `defaults` apply unless given. A
    recipe.json saved by a run is taken as it is (no defaults), so the run can be repeated."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name != "name" and getattr(args, f.name, None) is not None}
    if is_recipe_file(args.recipe):
        return read_recipe(args.recipe).replace(**overrides)
    if args.recipe not in list_recipes():
        raise ValueError(f"unknown recipe {args.recipe!r}: give one of "
                         f"{', '.join(list_recipes())}, or a recipe.json file")
    recipe = get_recipe(args.recipe, **{**defaults, **overrides})
    return fit_warmup(recipe, given="warmup_epochs" in overrides)


# The most of a run that warmup takes when --warmup-epochs is not given (the paper's
# fine-tuning warms up for 1 of 10 epochs; DeiT for 5 of 300).
WARMUP_SHARE = 0.1


def fit_warmup(recipe: Recipe, given: bool) -> Recipe:
    """The recipe's warmup capped to WARMUP_SHARE of a short run, unless the user chose it;
    a warning when the user's own warmup takes more than half of the run (the learning rate
    then barely decays, or never does)."""
    if not given and recipe.warmup_epochs > WARMUP_SHARE * recipe.epochs:
        return recipe.replace(warmup_epochs=round(WARMUP_SHARE * recipe.epochs, 4))
    if given and recipe.warmup_epochs > 0.5 * recipe.epochs:
        decay = max(recipe.epochs - recipe.warmup_epochs, 0)
        logging.getLogger("vitkit").warning(
            "--warmup-epochs %g is more than half of the %g epochs: the learning rate decays "
            "over the last %g epochs only%s; use a shorter warmup or more --epochs",
            recipe.warmup_epochs, recipe.epochs, decay,
            " (not at all: the run ends at the peak)" if decay == 0 else "")
    return recipe


def is_recipe_file(recipe: str) -> bool:
    """Whether --recipe names a file (a saved recipe.json) rather than a named recipe."""
    return recipe.endswith(".json") or os.path.sep in recipe or os.path.isfile(recipe)


def read_recipe(path: str) -> Recipe:
    """A recipe.json written by an earlier run (`Recipe.to_json`), checked field by field."""
    import json

    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--recipe {path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"--recipe {path} is not a JSON recipe ({error})") from error
    if not isinstance(document, dict):
        raise ValueError(f"--recipe {path} holds a JSON {type(document).__name__}, not a recipe")
    try:
        return Recipe.from_dict(document)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--recipe {path}: {error}") from error


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `train` and `finetune`."""
    parser.add_argument("--data", required=True,
                        help="an image folder (train/<class>/*), a CSV, or a built-in name "
                        "such as digits")
    parser.add_argument("--out", required=True, help="the run folder to write")
    parser.add_argument("--model", default=None, help="a preset name (see `vitkit models`)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model config field, e.g. --model-arg depth=4 "
                        "(repeatable)")
    parser.add_argument("--img-size", type=int, default=None, help="train at this resolution")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="autocast dtype: auto (bf16 where the hardware is native at it, "
                        "else fp32), fp32 or bf16")
    parser.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                        help="the same as --precision fp32")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--val-split", type=float, default=None,
                        help="hold out this fraction of train for validation")
    parser.add_argument("--data-dir", default=None, help="where built-in datasets live")
    parser.add_argument("--save-every", type=int, default=0,
                        help="also checkpoint every N steps (default: epoch ends only)")
    parser.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: PyTorch's; 1 is fastest for tiny models)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the model (auto: on for CUDA, off on the CPU, where "
                        "compiling takes longer than it saves on short runs)")
    parser.add_argument("--data-on-device", choices=("auto", "on", "off"), default="auto",
                        help="keep the decoded dataset on the training device (auto: when it "
                        "takes under half the free memory; off: stream batches from host memory)")
    parser.add_argument("--decode-on-device", choices=("auto", "on", "off"), default="auto",
                        help="decode streamed JPEG shards on the training device with nvJPEG "
                        "(auto: on a GPU; off: in --workers processes)")
    parser.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                        help="a shard folder (vitkit shards) is decoded into memory when it "
                        "fits this many GiB, else read per batch (default: a quarter of the "
                        "available memory)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes that decode streamed shards ahead of training (default: "
                        "the cores, at most 8; 0: threads in the training process)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute each block's activations in the backward pass: less "
                        "memory for big models (ViT-L/H), about a third more compute")
    parser.add_argument("--fsdp", action="store_true",
                        help="under torchrun: shard parameters, gradients and optimizer state "
                        "across the processes (PyTorch FSDP2), each holding 1/N; checkpoints are "
                        "saved whole. Needs --no-ema")
    parser.add_argument("--log-every", type=int, default=10,
                        help="read the loss from the device and log it every N steps (10)")


def parse_model_args(pairs: list[str]) -> dict[str, object]:
    """--model-arg KEY=VALUE pairs as config overrides, values read as JSON when they parse."""
    import json

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg needs KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides
