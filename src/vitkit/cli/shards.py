"""`vitkit shards --data SRC --out DIR`: write a data source as tar shards that training
reads per batch (for data larger than memory); `--data DIR` then takes the folder."""

from __future__ import annotations

import argparse

from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "shards", help="write images as tar shards for data larger than memory",
        description="Write an image source (a folder, a CSV or a built-in name) as "
        "WebDataset-style .tar shards (KEY.jpg/.png + KEY.cls) with an index, for `--data "
        "DIR` in train, finetune, eval and bench. Images whose shorter side is over --img-size "
        "are shrunk to it (JPEG stays JPEG); others are copied as they are. Files that do not "
        "decode are skipped and listed.")
    parser.add_argument("--data", required=True, help="folder, CSV or built-in name")
    parser.add_argument("--out", required=True, help="the shard folder to write")
    parser.add_argument("--img-size", type=int, default=None,
                        help="shrink images so their shorter side is at most this")
    parser.add_argument("--shard-size", type=int, default=256, help="MB per shard (256)")
    parser.add_argument("--data-dir", default=None, help="where built-in datasets live")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitkit.data.shards import write_shards
    from vitkit.data.sources import shard_items

    out = Path(args.out)
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise CommandError(f"{out} already exists and is not empty; choose another --out")
    if args.shard_size < 1 or (args.img_size is not None and args.img_size < 1):
        raise CommandError("--shard-size and --img-size must be positive")
    splits, classes = shard_items(args.data, args.data_dir)
    index = write_shards(splits, classes, out, args.img_size, args.shard_size * 2**20)
    for split, info in index["splits"].items():
        size = sum(shard["bytes"] for shard in info["shards"]) / 2**20
        print(f"{split}: {info['count']} images in {len(info['shards'])} shard(s), {size:.1f} MB")
    for path, reason in index["skipped"][:10]:
        print(f"skipped {path}: {reason}")
    if len(index["skipped"]) > 10:
        print(f"... and {len(index['skipped']) - 10} more skipped (see {out}/index.json)")
    print(f"wrote {out}; train from it with --data {out}")
    return 0
