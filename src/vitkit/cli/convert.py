"""`vitkit convert SRC DST --to FORMAT`: read weights from any supported source and write
them for vitkit, timm, Hugging Face or as Google's .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="convert weights between vitkit, timm, Hugging Face and Google .npz",
        description="Read SRC (a .safetensors/.pth/.bin/.npz file, a vitkit, HF or timm folder, "
        "or a hub id such as google/vit-base-patch16-224) and write DST in the format --to.",
    )
    parser.add_argument("src", help="checkpoint file, folder or hub id")
    parser.add_argument("dst", help="output: a folder (vitkit, hf, timm) or a file (.safetensors "
                        "for timm, .npz)")
    parser.add_argument("--model", default=None,
                        help="preset name of the architecture (needed when SRC does not say)")
    parser.add_argument("--to", default="vitkit", choices=["vitkit", "timm", "hf", "npz"],
                        help="output format (default: vitkit)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="replace the head with a zero-initialised one for this many classes")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.factory import create_model
    from vitkit.models import architecture_of
    from vitkit.weights import export

    destination = Path(args.dst)
    if destination.exists() and not args.force and (
        destination.is_file() or any(destination.iterdir())
    ):
        raise CommandError(f"{destination} already exists; choose another DST or pass --force")
    if args.to == "npz" and destination.suffix != ".npz":
        raise CommandError(f"--to npz writes a file: give DST a .npz suffix (got {destination})")
    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = create_model(args.model, pretrained=args.src, **overrides)
    architecture = architecture_of(model.config)
    # timm names the hybrid's tensors as vitkit does; HF's and Google's layouts are ViT-only.
    allowed = {"HybridVisionTransformer": ("vitkit", "timm"), "ResNet": ("vitkit",),
               "BiTResNet": ("vitkit",)}
    if architecture in allowed and args.to not in allowed[architecture]:
        raise CommandError(f"a {architecture} can be written only as --to "
                           f"{' or '.join(allowed[architecture])}")
    written = export(model, destination, to=args.to)
    config = model.config
    if architecture in ("ResNet", "BiTResNet"):
        print(f"wrote {written} ({args.to}): {config.arch}, {config.num_classes} classes, "
              f"{config.img_size[0]}x{config.img_size[1]}")
        return 0
    print(f"wrote {written} ({args.to}): {config.depth} blocks, dim {config.embed_dim}, "
          f"{config.num_heads} heads, {config.num_classes} classes, "
          f"{config.img_size[0]}x{config.img_size[1]}")
    return 0
