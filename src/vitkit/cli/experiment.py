"""`vitkit experiment data-scaling`: test accuracy against training-set size for several
models (the paper's Figures 3-4 on your data), resumable, as results.json and a plot."""

from __future__ import annotations

import argparse

from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("experiment", help="reproduce the paper's claims on your data")
    kinds = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    scaling = kinds.add_parser(
        "data-scaling", help="accuracy against training-set size for several models",
        description="Train each model on class-balanced fractions of the training set, every "
        "run seeing the same number of images (--epochs-at-full x the full set), test each on "
        "the whole test split, repeat over --seeds; writes OUT/results.json and "
        "OUT/data_scaling.png. Rerun the same command to continue a stopped experiment.")
    scaling.add_argument("--data", required=True, help="a folder with train/ and test/ (or "
                         "val/), or a built-in name such as cifar10 or digits")
    scaling.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                         help="model names (see `vitkit models`)")
    scaling.add_argument("--fractions", nargs="+", type=float, required=True, metavar="F")
    scaling.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S")
    scaling.add_argument("--epochs-at-full", type=float, default=10.0,
                         help="the budget: epochs over the whole training set (10); a fraction "
                         "f trains for this / f epochs")
    scaling.add_argument("--out", required=True)
    scaling.add_argument("--recipe", default="small-data")
    scaling.add_argument("--recipe-arg", action="append", default=[], metavar="KEY=VALUE")
    scaling.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    scaling.add_argument("--batch-size", type=int, default=128)
    scaling.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    scaling.add_argument("--data-dir", default=None, help="where built-in datasets live")
    scaling.add_argument("--teacher", default=None, metavar="MODEL",
                         help="one of --models (a CNN, say): every other model also trains "
                         "distilled from its run at the same size and seed (DeiT's "
                         "distillation token, hard distillation), as one more curve")
    scaling.add_argument("--progress", action="store_true", help="a progress bar per run")
    scaling.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitkit.data import load_splits
    from vitkit.experiment import Experiment, crossings, run_experiment

    from .recipe_args import parse_model_args

    if any(not 0 < f <= 1 for f in args.fractions):
        raise CommandError(f"--fractions must be in (0, 1], got {args.fractions}")
    if args.epochs_at_full <= 0:
        raise CommandError(f"--epochs-at-full must be positive, got {args.epochs_at_full}")
    splits = load_splits(args.data, data_dir=args.data_dir, progress=args.progress)
    test = splits.test if splits.test is not None else splits.val
    if test is None:
        raise CommandError(f"{splits.name} has no test/ or val/ split to test on")
    experiment = Experiment(
        train_set=splits.train, test_set=test, models=args.models,
        fractions=sorted(args.fractions), seeds=args.seeds,
        images_seen=round(args.epochs_at_full * len(splits.train)), out_dir=Path(args.out),
        recipe=args.recipe, recipe_overrides=parse_model_args(args.recipe_arg),
        model_overrides=parse_model_args(args.model_arg), batch_size=args.batch_size,
        precision=args.precision, progress=args.progress, teacher=args.teacher)
    results = run_experiment(experiment)
    for model, rows in results["summary"].items():
        shown = "  ".join(f"{row['train_images']}: {row['mean']:.3f}" for row in rows)
        print(f"{model:<24} {shown}")
    if len(args.models) >= 2:
        first, second = args.models[:2]
        where = crossings(results["summary"], first, second)
        print(f"{first} and {second} cross at " + (
            ", ".join(f"~{size:.0f} training images" for size in where) if where
            else "no measured size"))
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'data_scaling.png'}")
    return 0
