"""`vitkit analyze`: attention rollout overlays and the paper's Figure 7 panels for a
checkpoint and some images, as PNGs plus analysis.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .main import CommandError

log = logging.getLogger("vitkit")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze",
        help="attention rollout and Figure 7 analyses (filters, position similarity, "
        "attention distance) as PNGs and JSON",
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder or file")
    parser.add_argument("--images", required=True, nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders searched recursively for images")
    parser.add_argument("--out", required=True, help="folder to write PNGs and analysis.json")
    parser.add_argument("--head-fusion", default="mean", choices=["mean", "max", "min"],
                        help="how rollout combines the heads of a layer (default: mean)")
    parser.add_argument("--discard-ratio", type=float, default=0.0,
                        help="fraction of weakest attention weights rollout drops per row")
    parser.add_argument("--components", type=int, default=28,
                        help="principal components of the embedding filters to show")
    parser.add_argument("--max-images", type=int, default=64,
                        help="analyse at most this many images (default: 64)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import vitkit
    from vitkit.analysis import write_report
    from vitkit.analysis.inputs import load_images
    from vitkit.data import find_images
    from vitkit.models import is_transformer

    if not 0.0 <= args.discard_ratio < 1.0:
        raise CommandError(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    if args.components < 1 or args.max_images < 1:
        raise CommandError("--components and --max-images must be at least 1")
    model = vitkit.create_model(None, pretrained=args.checkpoint).float()
    if not is_transformer(model):
        raise CommandError(f"{args.checkpoint} holds a CNN ({model.meta.name or 'ResNet'}), "
                           "which has no attention to analyse; give a ViT checkpoint")
    missing = [path for path in args.images if not Path(path).exists()]
    if missing:
        raise CommandError(f"no image or folder at {missing[0]}")
    paths = find_images(args.images)
    if not paths:
        raise CommandError(
            f"no image files found in {' '.join(args.images)}; give image files or folders "
            "holding .png/.jpg images"
        )
    if len(paths) > args.max_images:
        log.info("analysing the first %d of %d images (raise --max-images for more)",
                 args.max_images, len(paths))
        paths = paths[: args.max_images]
    images, raw, names, skipped = load_images(paths, model)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not names:
        raise CommandError(f"none of the {len(paths)} files could be read as images")
    out = Path(args.out)
    extra = {"skipped": [{"path": path, "reason": reason} for path, reason in skipped]}
    report = write_report(model, images, out, raw_images=raw, names=names,
                          head_fusion=args.head_fusion, discard_ratio=args.discard_ratio,
                          k=args.components, extra=extra)
    distance = report["mean_attention_distance"]["layer_mean"]
    print(f"analysed {len(names)} images with {report['model_name']}; wrote {out}/")
    print(f"  rollout overlays  {', '.join(e['rollout_png'] for e in report['images'][:3])}"
          + (" ..." if len(names) > 3 else ""))
    print(f"  rollout follows   {report['rollout']['pooled_token']}")
    print("  figure 7          figure7.png (+ embedding_filters.png, position_similarity.png, "
          "attention_distance.png)")
    print("  mean attention distance per layer (px): "
          + " ".join(f"{d:.2f}" for d in distance))
    return 0
