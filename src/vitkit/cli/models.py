"""`vitkit models`: every preset with its size and cost."""

from __future__ import annotations

import argparse

from vitkit.models import ViTConfig, forward_flops, get_config, list_models, parameter_count


def count_parameters(config: ViTConfig) -> int:
    """Parameters of a model built from config, counted from the config alone (no torch)."""
    return parameter_count(config)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the model presets with parameters and GFLOPs")
    parser.add_argument("--filter", default="", help="only names containing this text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [name for name in list_models() if args.filter in name]
    print(f"{'model':<26} {'params':>12} {'GFLOPs':>9} {'res':>5} {'patch':>5} "
          f"{'dim':>5} {'depth':>5} {'heads':>5}")
    for name in names:
        config = get_config(name)
        params = count_parameters(config)
        gflops = forward_flops(config) / 1e9
        print(f"{name:<26} {params:>12,} {gflops:>9.2f} {config.img_size[0]:>5} "
              f"{config.patch_size:>5} {config.embed_dim:>5} {config.depth:>5} "
              f"{config.num_heads:>5}")
    print("GFLOPs: floating-point operations of one image's forward pass "
          "(2 per multiply-accumulate).")
    return 0
