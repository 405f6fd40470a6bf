"""Command-line options generated from the Recipe fields, so every recipe value can be
overridden (`--lr`, `--no-hflip`, `--mixup 0`, ...), plus the options every training command
shares."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from vitkit.device import TRAINING_PRECISIONS
from vitkit.train.recipes import Recipe, list_recipes

HELP = {
    "epochs": "training epochs (fractions allowed)",
    "batch_size": "global batch per optimizer step",
    "lr": "peak learning rate",
    "accum_steps": "gradient accumulation: micro-batches per step",
    "grad_clip": "clip gradients to this global norm (0: off)",
    "representation_size": "pre-logits layer width (-1: embed_dim, 0: none)",
    "distill": "with --teacher: hard (the teacher's top class, DeiT's) or soft (KL)",
    "distill_alpha": "with --teacher: the distillation head's share of the loss (0.5)",
    "distill_tau": "with --teacher --distill soft: the temperature",
    "layer_decay": "layer-wise lr decay R: block i trains at lr*R^(L-i), the embedding at "
    "lr*R^(L+1), the head at lr (1: off; 0.65-0.75 for fine-tuning)",
    "lora_rank": "train LoRA adapters of this rank on qkv, proj, fc1 and fc2 (and the head) "
    "instead of all weights; the checkpoint is saved merged (0: off; needs peft)",
    "lora_alpha": "LoRA scaling: the adapters' update is multiplied by alpha/rank",
    "lora_dropout": "dropout on the LoRA adapters' input",
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


def recipe_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The recipe fields given on the command line (the rest stay the recipe's)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
            if f.name != "name" and getattr(args, f.name, None) is not None}


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
    parser.add_argument("--precision", choices=TRAINING_PRECISIONS, default="auto",
                        help="autocast dtype: auto (bf16 where the hardware is native at it, "
                        "else fp32), fp32, bf16, or fp8 (bf16 with the encoder's linear layers "
                        "in float8, for GPUs of compute capability 8.9+)")
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
    parser.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                        help="distil from this checkpoint (any vitkit classifier, a ResNet "
                        "too): the ViT gets DeiT's distillation token and head, averaged at "
                        "inference; see --distill, --distill-alpha")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="fit the epochs (when --epochs is not given) to this many minutes "
                        "(default: 30 on a CPU, 180 on a GPU)")
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
