"""The recipe's augmentation on a batch: vitkit's batched `BatchAugment` against the same
transforms as torchvision's per-image v2 pipeline (RandomResizedCrop, flip, RandAugment,
normalise, RandomErasing, then MixUp/CutMix on the batch), in the same process, as CPU
milliseconds per batch (process time, so other jobs on a shared machine count less).

    python benchmarks/augment_speed.py          # 128 x 32x32 and 32 x 224x224
    python benchmarks/augment_speed.py --size 224 --batch-size 64
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from results_writer import add_options, table, write_section
from torchvision.transforms import v2

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
    parser.add_argument("--size", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[128, 32],
                        help="one per --size")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    add_options(parser)
    args = parser.parse_args()
    if len(args.size) != len(args.batch_size):
        parser.error("give one --batch-size per --size")
    torch.set_num_threads(args.threads)
    rows = [measure(size, batch, args.threads, args.repeats)
            for size, batch in zip(args.size, args.batch_size, strict=True)]
    body = table(["batch", "threads", "vitkit ms", "torchvision ms", "speed-up"], rows, "lrrrr")
    print(body)
    if not args.no_record:
        write_section("Batched augmentation against torchvision per image "
                      "(benchmarks/augment_speed.py)", body, path=args.results,
                      facts=["small-data recipe (crop, flip, RandAugment, erasing, MixUp/CutMix) "
                             "on random uint8 images; CPU ms per batch"])
    return 0


def measure(size: int, batch: int, threads: int, repeats: int) -> list[object]:
    """One table row: the batch, threads, vitkit's and torchvision's CPU ms, the speed-up."""
    recipe = get_recipe("small-data")
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    targets = torch.randint(0, 10, (batch,))
    ours = BatchAugment(recipe, 10, Preprocessing(mean=mean, std=std, crop_pct=1.0),
                        (size, size), (size, size))
    theirs = torchvision_pipeline(recipe, size, mean, std)
    vitkit_ms = cpu_ms(ours, images, targets, repeats)
    torchvision_ms = cpu_ms(theirs, images, targets, repeats)
    return [f"{batch} x {size}x{size}", threads, f"{vitkit_ms:.1f}", f"{torchvision_ms:.1f}",
            f"{torchvision_ms / vitkit_ms:.1f}x"]

if __name__ == "__main__":
    sys.exit(main())
