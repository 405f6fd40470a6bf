"""`vitkit eval --checkpoint DIR --data SRC`: top-1/top-5 and per-class accuracy of a saved
model, plus metrics.json and a confusion-matrix PNG in --out (default: eval/ beside the
checkpoint folder); with --few-shot/--linear-probe/--knn, frozen-feature evaluation instead
(`frozen_eval`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .backend_args import add_backend_options, check_backend_options
from .frozen_eval import add_frozen_options, check_frozen_flags, run_frozen, wants_frozen
from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="accuracy of a saved model on a dataset",
        description="Evaluate a vitkit checkpoint on a data source (a folder, a CSV or a "
        "built-in name, as for `vitkit train --data`). Writes metrics.json and "
        "confusion_matrix.png to --out, by default a folder eval/ beside the checkpoint folder. "
        "With --few-shot, --linear-probe or --knn it evaluates the frozen features instead "
        "(fitted on the train split) and adds them to metrics.json under 'frozen'.")
    parser.add_argument("--checkpoint", required=True, help="a vitkit checkpoint folder")
    parser.add_argument("--data", required=True, help="folder, CSV, or digits/cifar10/...")
    parser.add_argument("--split", choices=("test", "val", "train"), default=None,
                        help="which split (default: test, else val)")
    parser.add_argument("--val-split", type=float, default=None,
                        help="fraction carved out as val when the data has no val/ folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of --val-split")
    parser.add_argument("--data-dir", default=None, help="where torchvision data sets are")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: fp32 on the CPU (the same number on every CPU, and the "
                        "number a training run reports), bf16 on a GPU that is native at it")
    parser.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                        help="the same as --precision fp32")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: best)")
    add_backend_options(parser.add_argument, evaluation=True)
    parser.add_argument("--out", default=None, help="folder for metrics.json and the PNG")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar while images are decoded")
    add_frozen_options(parser)
    parser.set_defaults(func=run)


def _choose_split(splits, wanted: str | None):
    if wanted is not None:
        return wanted, splits.get(wanted)
    for name in ("test", "val"):
        if getattr(splits, name) is not None:
            return name, getattr(splits, name)
    raise CommandError(f"{splits.name} has no test or val split; pass --split train, or "
                       "--val-split FRACTION to hold some images out")


def _check_classes(names: list[str] | None, classes: list[str] | None) -> None:
    """The model's class names must be the data's (when both are known)."""
    if names and classes is not None and list(names) != list(classes):
        missing = sorted(set(names) - set(classes))
        extra = sorted(set(classes) - set(names))
        raise CommandError(
            f"the data's classes differ from the model's (only in the model: {missing[:10]}; "
            f"only in the data: {extra[:10]}); evaluate on data with the model's classes")


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path,
                   title: str) -> None:
    """Save the confusion matrix (rows: true class, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(confusion)
    n = len(classes)
    size = min(4 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _calibrates_on_train(args: argparse.Namespace) -> bool:
    return args.backend == "int8" and not args.calibration


def _calibration(args: argparse.Namespace, model, splits):  # noqa: ANN001, ANN202
    """uint8 images for --backend int8: --calibration's files, else the train split's, at
    most --max-calibration-images spread evenly."""
    from vitkit.data import find_images, spread_evenly
    from vitkit.infer import calibration_images

    if args.calibration:
        return calibration_images(model, find_images(args.calibration),
                                  args.max_calibration_images)
    if splits.train is None or len(splits.train) == 0:
        raise CommandError(f"{splits.name} has no train split to calibrate int8 on; pass "
                           "--calibration IMAGE_OR_FOLDER")
    return splits.train.images[spread_evenly(len(splits.train), args.max_calibration_images)]


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_backend_options(args, evaluation=True)
    import torch  # after the flags are checked: it takes seconds to import

    from vitkit.data import load_splits, source_classes
    from vitkit.device import default_device, evaluation_dtype, resolve_dtype
    from vitkit.files import write_json
    from vitkit.infer import evaluate
    from vitkit.infer.backends import INT8_PATHS
    from vitkit.weights import load_pretrained, run_checkpoint

    device = torch.device(args.device or default_device())
    model = load_pretrained(args.checkpoint, map_location=device)
    frozen = wants_frozen(args)
    if frozen:
        check_frozen_flags(args, model)  # before decoding
    else:
        _check_classes(model.meta.class_names, source_classes(args.data))  # before decoding
    prep = model.meta.preprocessing  # files are read as `vitkit predict` reads them
    splits = load_splits(args.data, img_size=tuple(model.config.img_size),
                         in_chans=model.config.in_chans, val_split=args.val_split,
                         seed=args.seed, data_dir=args.data_dir, cache_dir=args.cache_dir,
                         progress=not args.no_progress, crop_pct=prep.crop_pct,
                         interpolation=prep.interpolation,
                         only=None if frozen or _calibrates_on_train(args) else args.split)
    split, dataset = _choose_split(splits, args.split)
    checkpoint = run_checkpoint(args.checkpoint).resolve()
    out = Path(args.out) if args.out else (
        checkpoint.parent if checkpoint.is_dir() else checkpoint.parent.parent) / "eval"
    if frozen:
        return run_frozen(args, model, splits, split, device, out, checkpoint)
    _check_classes(model.meta.class_names, dataset.classes)
    if dataset.num_classes != model.config.num_classes:
        raise CommandError(f"the data has {dataset.num_classes} classes but the model predicts "
                           f"{model.config.num_classes}")
    dtype = (evaluation_dtype(device) if args.precision == "auto"
             else resolve_dtype(device, args.precision))
    calibration = _calibration(args, model, splits) if args.backend == "int8" else None
    metrics = evaluate(model, dataset, batch_size=args.batch_size, dtype=dtype, device=device,
                       backend=args.backend, calibration=calibration)
    out.mkdir(parents=True, exist_ok=True)
    computed_in = ("int8" if args.backend in INT8_PATHS else "float8" if args.backend == "fp8"
                   else str(dtype).replace("torch.", ""))
    document = {"checkpoint": str(checkpoint), "data": args.data, "split": split,
                "dtype": computed_in,
                "backend": args.backend, "skipped": dataset.skipped,
                **metrics}
    write_json(out / "metrics.json", document)
    plot_confusion(metrics["confusion"], dataset.classes, out / "confusion_matrix.png",
                   f"{model.meta.name or checkpoint.name} on {splits.name}/{split}: "
                   f"top-1 {metrics['top1']:.1%}")
    print(f"{splits.name}/{split}: {metrics['count']} images"
          + (f" ({len(dataset.skipped)} unreadable files skipped)" if dataset.skipped else ""))
    print(f"  top-1 {metrics['top1']:.2%}   top-{metrics['topk']} {metrics['top5']:.2%}   "
          f"loss {metrics['loss']:.4f}")
    print("  per class:")
    width = max(len(name) for name in dataset.classes)
    for name, accuracy in metrics["per_class"].items():
        shown = "-" if accuracy is None else f"{accuracy:.2%}"
        print(f"    {name:<{width}}  {shown:>7}  ({metrics['class_counts'][name]} images)")
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion_matrix.png'}")
    return 0
