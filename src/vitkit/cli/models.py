"""`vitkit models`: every preset (ViTs, hybrids, ResNet baselines) with its size and cost."""

from __future__ import annotations

import argparse

from vitkit.models import ResNetConfig, ViTConfig, forward_flops, get_config, list_models
from vitkit.models import parameter_count as vit_parameter_count
from vitkit.models.config import FAMILIES, preset_family
from vitkit.models.costs import COUNTED


def count_parameters(config) -> int:
    """Parameters of a model built from config: a plain ViT's from the config alone (no
    torch), any other's counted on the meta device (no memory)."""
    if type(config) is ViTConfig:
        return vit_parameter_count(config)
    import torch

    from vitkit.models import build_model

    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the model presets with parameters and GFLOPs")
    parser.add_argument("--filter", default="", help="only names containing this text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [name for name in list_models() if args.filter in name]
    print(f"{'model':<36} {'family':<15} {'params':>12} {'GFLOPs':>9} {'res':>5} {'patch':>5} "
          f"{'dim':>5} {'depth':>5} {'heads':>5}")
    for name in names:
        config = get_config(name)
        if name in COUNTED:  # hybrids and CNNs: counted once, kept (no torch here)
            params, flops = COUNTED[name]
        else:
            params, flops = count_parameters(config), forward_flops(config)
        gflops = flops / 1e9
        family = preset_family(name)
        if isinstance(config, ResNetConfig):  # a CNN baseline: no patches, width or heads
            print(f"{name:<36} {family:<15} {params:>12,} {gflops:>9.2f} {config.img_size[0]:>5} "
                  f"{'-':>5} {'-':>5} {'-':>5} {'-':>5}  (CNN baseline; 3x3 stem at <= 64 px)")
            continue
        note = f"  (ResNet stages {list(config.resnet_layers)} + ViT)" if hasattr(
            config, "resnet_layers") else ""
        print(f"{name:<36} {family:<15} {params:>12,} {gflops:>9.2f} {config.img_size[0]:>5} "
              f"{config.patch_size:>5} {config.embed_dim:>5} {config.depth:>5} "
              f"{config.num_heads:>5}{note}")
    print("GFLOPs: floating-point operations of one image's forward pass "
          "(2 per multiply-accumulate).")
    shown = dict.fromkeys(preset_family(name) for name in names)
    for family in (f for f in shown if f in FAMILIES):
        print(f"  {family:<15} {FAMILIES[family]}")
    return 0
