"""`vitkit info NAME`: the full configuration and cost of a preset or a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vitkit.models import PRESETS, forward_flops, get_config
from vitkit.models.config import preset_family

from .models import count_parameters


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="show a model's configuration, parameters and GFLOPs")
    parser.add_argument("name", help="a preset name (see `vitkit models`) or a checkpoint folder")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    extra: dict = {}
    if Path(args.name).exists():
        from vitkit.weights import load_pretrained

        model = load_pretrained(args.name)
        config = model.config
        extra = {"class_names": model.meta.class_names,
                 "preprocessing": model.meta.preprocessing.to_dict()}
        name = model.meta.name or args.name
    else:
        config = get_config(args.name)
        name = args.name
    info = {
        "name": name,
        "parameters": count_parameters(config),
        "gflops": round(forward_flops(config) / 1e9, 3),
        "num_patches": getattr(config, "num_patches", None),  # None for a CNN
        # the ViT, or which descendant (a preset's own, e.g. DeiT: a ViT by its switches)
        "family": preset_family(name) if name in PRESETS else getattr(config, "family", "cnn"),
        "config": config.to_dict(),
        **extra,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{name}")
    print(f"  family       {info['family']}")
    print(f"  parameters   {info['parameters']:,}")
    print(f"  GFLOPs       {info['gflops']:.2f} per image (forward)")
    if info["num_patches"] is not None:
        print(f"  tokens       {config.num_prefix_tokens} + {config.num_patches} patches "
              f"({config.grid_size[0]}x{config.grid_size[1]} grid)")
    for key, value in config.to_dict().items():
        print(f"  {key:<20} {value}")
    for key, value in extra.items():
        if value:
            shown = value if key != "class_names" or len(value) <= 12 else f"{len(value)} classes"
            print(f"  {key:<20} {shown}")
    return 0
