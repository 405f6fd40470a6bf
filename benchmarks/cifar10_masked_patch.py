"""Masked patch prediction on CIFAR-10 (paper Section 4.6, issue 15): pre-train a ViT on all
50,000 training images without labels, fine-tune it on a class-balanced 10% of the labels,
and compare with the same ViT trained from scratch on the same 10% with the same recipe and
number of epochs. Both are tested on the 10,000 test images. Every step is a vitkit command,
as a user would run it; the table is printed and recorded in benchmarks/RESULTS.md with the
date, the machine and the command.

    mkdir -p data/cifar10 && tar xzf ../shared/data/cifar10-png.tar.gz -C data/cifar10
    python benchmarks/cifar10_masked_patch.py --cifar data/cifar10 --work runs/mpp \
        --pretrain-epochs 10 --finetune-epochs 30
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from results_writer import add_options, table, write_section


def labelled_subset(cifar: Path, out: Path, fraction: float, seed: int) -> int:
    """out/train/<class>/ with `fraction` of each class's training images (symlinks, a seeded
    choice) and out/test linked to the whole test split; returns the number of images."""
    rng = random.Random(seed)
    total = 0
    for folder in sorted((cifar / "train").iterdir()):
        files = sorted(folder.iterdir())
        rng.shuffle(files)
        chosen = files[:max(1, round(fraction * len(files)))]
        target = out / "train" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for file in chosen:
            link = target / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
        total += len(chosen)
    if not (out / "test").exists():
        (out / "test").symlink_to((cifar / "test").resolve())
    return total


def vitkit(*args: str) -> tuple[dict, float]:
    """Run one vitkit command; returns its JSON summary line and its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vitkit", *args], capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"vitkit {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    summary = next(json.loads(line) for line in done.stdout.splitlines()
                   if line.startswith("{"))
    return summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("data/cifar10"))
    parser.add_argument("--work", type=Path, default=Path("runs/mpp"))
    parser.add_argument("--model", default="vit_cifar_mini_patch4_32")
    parser.add_argument("--pretrain-epochs", type=float, default=6)
    parser.add_argument("--finetune-epochs", type=float, default=30)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    add_options(parser)
    args = parser.parse_args()
    work = args.work
    labelled = labelled_subset(args.cifar, work / "labelled", args.fraction, args.seed)
    common = ["--no-progress", "--seed", str(args.seed), "--precision", "fp32"]
    pre_out = work / "pretrain"
    pre, pre_s = (vitkit("pretrain", "--objective", "masked-patch", "--data",
                         str(args.cifar / "train"), "--model", args.model, "--epochs",
                         str(args.pretrain_epochs), "--out", str(pre_out), *common)
                  if not (pre_out / "checkpoint").exists() else ({"steps": "kept"}, 0.0))
    budget = ["--data", str(work / "labelled"), "--recipe", "small-data", "--epochs",
              str(args.finetune_epochs), *common]
    tuned, tuned_s = vitkit("finetune", "--pretrained", str(pre_out / "checkpoint"),
                            "--out", str(work / "finetuned"), *budget)
    scratch, scratch_s = vitkit("train", "--model", args.model, "--out", str(work / "scratch"),
                                *budget)
    gain = tuned["test_top1"] - scratch["test_top1"]
    body = table(
        ["model", "MPP pre-training epochs on 50,000 unlabelled (time)", "labelled images",
         "fine-tuning epochs", "from scratch, test top-1 (time)",
         "MPP + fine-tuning, test top-1 (time)", "gain, points"],
        [[args.model, f"{args.pretrain_epochs:g} ({pre_s / 60:.1f} min)", f"{labelled:,}",
          f"{args.finetune_epochs:g}", f"{scratch['test_top1']:.4f} ({scratch_s / 60:.1f} min)",
          f"{tuned['test_top1']:.4f} ({tuned_s / 60:.1f} min)", f"**{gain * 100:+.1f}**"]])
    print(body)
    print(f"pre-training: {json.dumps(pre)}")
    if not args.no_record:
        write_section(f"Masked patch prediction on CIFAR-10, {args.fraction:.0%} of the labels "
                      "(benchmarks/cifar10_masked_patch.py)", body, path=args.results)

if __name__ == "__main__":
    main()
