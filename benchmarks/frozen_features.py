"""Frozen-feature evaluation on CIFAR-10 (issue 22, item 1): few-shot linear regression (the
paper's Section 4.1 and big_vision's fewshot_lsr: 1/5/10/25 shots, 3 seeds, l2 = 2^10), a
logistic-regression linear probe and 20-NN, on the pre-logits of three ViTs of one size: a
randomly initialised one (the floor), one trained with labels for a few epochs, and one
pre-trained by masked patch prediction without labels. The checkpoints are trained by
`vitkit.plan_training` when their run folder has none (kept otherwise); the table is printed
and recorded in benchmarks/RESULTS.md with the date, the machine and the command.

    mkdir -p data/cifar10 && tar xzf ../shared/data/cifar10-png.tar.gz -C data/cifar10
    python benchmarks/frozen_features.py --cifar data/cifar10 --work runs/frozen
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from results_writer import add_options, table, write_section

SHOTS = (1, 5, 10, 25)
# Few epochs and light augmentation: what trains a useful classifier in minutes on a CPU.
LIGHT = {"randaugment": False, "mixup": 0.0, "cutmix": 0.0, "random_erasing": 0.0,
         "ema": False, "drop_path": 0.0}


def trained(cifar: Path, out: Path, model: str, objective: str, epochs: float,
            seed: int) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of a run in `out`, trained now unless it is there; with its summary."""
    checkpoint = out / "checkpoint"
    if not checkpoint.exists():
        import vitkit

        overrides = {"epochs": epochs, "batch_size": 128, "warmup_epochs": epochs / 8,
                     **({} if objective == "masked-patch" else LIGHT)}
        data = cifar / "train" if objective == "masked-patch" else cifar
        run = vitkit.plan_training(str(data), out, model=model, objective=objective,
                                   overrides=overrides, seed=seed, precision="fp32",
                                   progress=False)
        print(run)
        run.fit()
    summary = json.loads((out / "metrics.json").read_text())
    return checkpoint, summary


def balanced_subset(dataset, count: int, seed: int):
    """A class-balanced, seeded `count` images of `dataset` (all of it when count covers it)."""
    from vitkit.infer.fewshot import sample_shots

    per_class = count // dataset.num_classes
    if per_class * dataset.num_classes >= len(dataset):
        return dataset
    return dataset.subset(sample_shots(dataset.targets, per_class, dataset.num_classes, seed))


def frozen_numbers(model, cifar: Path, train_images: int, seed: int) -> dict[str, Any]:
    """evaluate_frozen of `model` on CIFAR-10 decoded with its own preprocessing."""
    from vitkit.data import load_splits
    from vitkit.infer import evaluate_frozen

    prep = model.meta.preprocessing
    splits = load_splits(str(cifar), img_size=tuple(model.config.img_size), in_chans=3,
                         crop_pct=prep.crop_pct, interpolation=prep.interpolation,
                         progress=False)
    train = balanced_subset(splits.train, train_images, seed)
    return evaluate_frozen(model, train, splits.test, few_shot=SHOTS, seeds=3, linear_probe=True,
                           knn=20)


def row(name: str, how: str, own_top1: str, result: dict[str, Any]) -> list[str]:
    """One table row: few-shot mean ± std in percent, probe and k-NN top-1 in percent."""
    few = result["few_shot"]["shots"]
    cells = [f"{100 * few[s]['mean']:.1f} ± {100 * few[s]['std']:.1f}" for s in SHOTS]
    probe = result["linear_probe"]
    return [name, how, own_top1, *cells, f"{100 * probe['top1']:.1f} (C {probe['c']:g})",
            f"{100 * result['knn']['top1']:.1f}", f"{result['features']['seconds'] / 60:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("data/cifar10"))
    parser.add_argument("--work", type=Path, default=Path("runs/frozen"))
    parser.add_argument("--model", default="vit_cifar_mini_patch4_32")
    parser.add_argument("--train-epochs", type=float, default=0.4)
    parser.add_argument("--pretrain-epochs", type=float, default=0.4)
    parser.add_argument("--train-images", type=int, default=10000,
                        help="class-balanced training images the frozen classifiers see")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-only", action="store_true", help="train, evaluate nothing")
    add_options(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    supervised, sup = trained(args.cifar, args.work / "supervised", args.model,
                              "classification", args.train_epochs, args.seed)
    pretrained, mpp = trained(args.cifar, args.work / "masked_patch", args.model,
                              "masked-patch", args.pretrain_epochs, args.seed)
    trained_minutes = (time.perf_counter() - started) / 60
    print(f"checkpoints ready after {trained_minutes:.1f} min")
    if args.train_only:
        return
    import torch

    import vitkit

    trained_model = vitkit.load_pretrained(supervised)
    torch.manual_seed(args.seed)
    floor = vitkit.create_model(args.model, num_classes=10)
    floor.meta.preprocessing = trained_model.meta.preprocessing  # the same inputs
    models = [("random init", "none", "-", floor),
              ("supervised", f"{args.train_epochs:g} epoch with labels ({sup['seconds'] / 60:.1f}"
               " min)", f"{100 * sup['test_top1']:.1f}", trained_model),
              ("masked-patch", f"{args.pretrain_epochs:g} epoch without labels "
               f"({mpp['seconds'] / 60:.1f} min)", "-", vitkit.load_pretrained(pretrained))]
    results, rows = {}, []
    for name, how, own, model in models:
        results[name] = frozen_numbers(model, args.cifar, args.train_images, args.seed)
        rows.append(row(name, how, own, results[name]))
        print(rows[-1], flush=True)
    body = table(["features of", "training (time)", "own head, test top-1 %",
                  *[f"{s}-shot %" for s in SHOTS], "linear probe %", "20-NN %",
                  "feature time, min"], rows, align="llr" + "r" * (len(SHOTS) + 3))
    print(body)
    out = Path(__file__).with_name("results") / "frozen_features_cifar10.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    minutes = (time.perf_counter() - started) / 60 - trained_minutes
    dim = results["supervised"]["features"]["dim"]
    facts = [f"{args.model}; features: its pre-logits ({dim} dims), in fp32",
             f"fitted on a class-balanced {args.train_images:,} of the 50,000 training images, "
             "scored on the 10,000 test images; few-shot: l2 2^10, seeds 0-2, mean ± std; "
             "probe C chosen on a 10% carve; k-NN cosine, majority vote",
             f"evaluating the three models took {minutes:.1f} min (training: the table's "
             "times; kept checkpoints are reused) on 2 CPU cores shared with other engineers' jobs "
             f"(load average {os.getloadavg()[0]:.1f} at the end); JSON: "
             "benchmarks/results/frozen_features_cifar10.json"]
    if not args.no_record:
        write_section("Frozen-feature evaluation on CIFAR-10: few-shot, linear probe, k-NN "
                      "(benchmarks/frozen_features.py)", body, facts=facts, path=args.results)


if __name__ == "__main__":
    main()
