"""The speed benchmarks of issue 5 in one command, appended to benchmarks/RESULTS.md.

    python benchmarks/throughput.py [--quick] [--compile]

Inference: vit_base_patch16_224 at batch 16 and vit_small_patch16_224 at batch 32.
Training: a CIFAR-sized ViT (32x32, patch 4, dim 192, 6 layers) at batch 128.
Each row is timed beside timm and Hugging Face transformers in the same process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitkit.cli.main import main

RESULTS = Path(__file__).with_name("RESULTS.md")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--precision", nargs="+", default=["auto"])
    args = parser.parse_args()
    timing = ["--rounds", "1", "--min-time", "1"] if args.quick else ["--rounds", "3"]
    extra = timing + (["--compile"] if args.compile else []) + ["--precision", *args.precision]
    runs = [
        ["--model", "vit_base_patch16_224", "--batch-size", "16", "--mode", "inference"],
        ["--model", "vit_small_patch16_224", "--batch-size", "32", "--mode", "inference"],
        ["--model", "vit_cifar_patch4_32", "--depth", "6", "--batch-size", "128",
         "--mode", "train", "--title", "CIFAR-sized ViT (dim 192, depth 6), training, batch 128"],
    ]
    for run in runs:
        main(["bench", *run, *extra, "--results", str(RESULTS)])


if __name__ == "__main__":
    cli()
