"""`vitkit predict --checkpoint DIR IMAGE_OR_FOLDER...`: top-k classes per image, as a table,
JSON or CSV; unreadable files get an error row and the rest are still predicted."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from .backend_args import add_backend_options, check_backend_options
from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict", help="classify image files with a saved model",
        description="Classify images with a checkpoint saved by vitkit (save_pretrained / "
        "train). Folders are searched recursively for images. Exit status: 0 if any image "
        "was predicted, 1 if every one failed.")
    parser.add_argument("--checkpoint", required=True,
                        help="a vitkit checkpoint folder, or an .onnx file from `vitkit export`")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (5)")
    parser.add_argument("--topk", dest="top_k", type=int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the old spelling, still accepted
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fp32", action="store_true",
                        help="compute in fp32 even where bf16 is native")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: best)")
    add_backend_options(parser.add_argument, onnx=True)
    parser.set_defaults(func=run)


def _table(rows) -> str:
    width = min(max((len(r.source) for r in rows), default=4), 60)
    lines = [f"{'file':<{width}}  prediction"]
    for row in rows:
        source = row.source if len(row.source) <= width else "..." + row.source[-width + 3:]
        if row.error:
            text = f"ERROR: {row.error}"
        else:
            text = "  ".join(f"{label} {prob:.1%}" for label, prob in zip(row.labels, row.probs,
                                                                           strict=True))
        lines.append(f"{source:<{width}}  {text}")
    return "\n".join(lines)


def _csv(rows, k: int) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")  # not csv's default CRLF
    header = ["file"]
    for i in range(1, k + 1):
        header += [f"label{i}", f"prob{i}"]
    writer.writerow(header + ["error"])
    for row in rows:
        cells = [row.source]
        for i in range(k):
            has = i < len(row.labels)
            cells += [row.labels[i] if has else "", f"{row.probs[i]:.6f}" if has else ""]
        writer.writerow(cells + [row.error or ""])


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_backend_options(args)
    is_onnx = args.checkpoint.endswith(".onnx")
    if is_onnx and args.backend not in ("auto", "onnx"):
        raise CommandError(f"--backend {args.backend} runs a vitkit checkpoint; an .onnx file "
                           "runs with --backend onnx")
    if not is_onnx and args.backend == "onnx":
        raise CommandError("--backend onnx runs an .onnx file from `vitkit export`; pass one "
                           "as --checkpoint")
    from vitkit.data import find_images  # torch: after the flags are checked
    from vitkit.device import default_device
    from vitkit.infer import calibration_images, predict
    from vitkit.weights import load_pretrained

    files = find_images(args.inputs)
    if not files:
        raise CommandError(f"no image files found in {' '.join(args.inputs)}")
    if is_onnx:
        from vitkit.export import OnnxClassifier
        from vitkit.infer import predict_onnx

        model = OnnxClassifier(args.checkpoint)
        rows = predict_onnx(model, files, top_k=args.top_k, batch_size=args.batch_size)
        num_classes = model.num_classes
    else:
        device = args.device or default_device()
        model = load_pretrained(args.checkpoint, map_location=device)
        calibration = (calibration_images(model, find_images(args.calibration),
                                          args.max_calibration_images)
                       if args.calibration else None)
        rows = predict(model, files, top_k=args.top_k, batch_size=args.batch_size, device=device,
                       fp32=args.fp32, backend=args.backend, calibration=calibration)
        num_classes = model.config.num_classes
    if args.format == "json":
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    elif args.format == "csv":
        _csv(rows, min(args.top_k, num_classes))
    else:
        print(_table(rows))
    failed = sum(not row.ok for row in rows)
    if failed:
        print(f"{failed} of {len(rows)} files could not be read", file=sys.stderr)
    return 0 if failed < len(rows) else 1
