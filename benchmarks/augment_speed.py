"""The recipe's augmentation on a batch: vitkit's batched `BatchAugment` against the same
transforms as torchvision's per-image v2 pipeline (RandomResizedCrop, flip, RandAugment,
normalise, RandomErasing, then MixUp/CutMix on the batch), in the same process, as CPU
milliseconds per batch (process time, so other jobs on a shared machine count less).

    python benchmarks/augment_speed.py                      # CIFAR-sized, batch 128
    python benchmarks/augment_speed.py --size 224 --batch-size 64
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from vitkit.bench.throughput import machine_description
from vitkit.models import Preprocessing
from vitkit.train import get_recipe
from vitkit.train.augment import BatchAugment


def torchvision_pipeline(recipe, size: int, mean, std):
    per_image = v2.Compose([
        v2.RandomResizedCrop(size, scale=(recipe.crop_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandAugment(num_ops=recipe.randaug_ops, magnitude=recipe.randaug_magnitude),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
        v2.RandomErasing(p=recipe.random_erasing, value=0),
    ])
    mix = v2.RandomChoice([v2.MixUp(alpha=recipe.mixup, num_classes=10),
                           v2.CutMix(alpha=recipe.cutmix, num_classes=10)])

    def run(images, targets):
        x = torch.stack([per_image(image) for image in images])
        return mix(x, targets) if torch.rand(()) < recipe.mix_prob else (x, targets)

    return run


def cpu_ms(function, images, targets, repeats: int) -> float:
    function(images, targets)
    start = time.process_time()
    for _ in range(repeats):
        function(images, targets)
    return (time.process_time() - start) / repeats * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = get_recipe("small-data")
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8)
    targets = torch.randint(0, 10, (args.batch_size,))
    ours = BatchAugment(recipe, 10, Preprocessing(mean=mean, std=std, crop_pct=1.0),
                        (args.size, args.size), (args.size, args.size))
    theirs = torchvision_pipeline(recipe, args.size, mean, std)
    vitkit_ms = cpu_ms(ours, images, targets, args.repeats)
    torchvision_ms = cpu_ms(theirs, images, targets, args.repeats)
    line = (f"| {datetime.date.today()} | {machine_description(torch.device('cpu'))} | "
            f"{args.batch_size} x {args.size}x{args.size} | {args.threads} | "
            f"{vitkit_ms:.1f} | {torchvision_ms:.1f} | {torchvision_ms / vitkit_ms:.1f}x |")
    print(line)
    command = "python benchmarks/augment_speed.py " + " ".join(sys.argv[1:])
    with open(args.results, "a") as handle:
        handle.write(f"\n## Batched augmentation against torchvision per image "
                     f"(benchmarks/augment_speed.py)\n\n`{command}`; small-data recipe (crop, "
                     "flip, RandAugment, erasing, MixUp/CutMix); CPU ms per batch\n\n"
                     "| date | machine | batch | threads | vitkit ms | torchvision ms | "
                     f"speed-up |\n|---|---|---|---|---|---|---|\n{line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
