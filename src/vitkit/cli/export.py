"""`vitkit export CHECKPOINT OUT --format onnx [--opset N] [--int8 dynamic|static]`: a trained
model as an ONNX file for ONNX Runtime, in fp32 or int8, with its class names and
preprocessing in the file's metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import install_hint
from .main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export", help="export a model to ONNX (fp32 or int8)",
        description="Write CHECKPOINT (a vitkit checkpoint folder, or any weights `convert` "
        "reads) as an ONNX graph at the model's native image size with a dynamic batch "
        "dimension. --int8 dynamic quantizes the weights (each attention one QAttention, an "
        "ONNX Runtime operator, unless --standard-ops); --int8 static also the "
        "activations, calibrated on the images given with --calibration. Needs the `serve` "
        f"extra: {install_hint('serve')}.")
    parser.add_argument("checkpoint", help="checkpoint folder, file or hub id")
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="only onnx for now")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 17, at least 14)")
    parser.add_argument("--int8", choices=("dynamic", "static"), default=None,
                        help="quantize to int8 (static needs --calibration)")
    parser.add_argument("--calibration", nargs="+", default=None, metavar="IMAGE_OR_FOLDER",
                        help="images to calibrate --int8 static on (a few hundred suffice)")
    parser.add_argument("--max-calibration-images", type=int, default=512,
                        help="use at most this many calibration images, spread evenly (512)")
    parser.add_argument("--standard-ops", action="store_true",
                        help="--int8 dynamic with standard ONNX operators only (for runtimes "
                        "other than ONNX Runtime; slower in ONNX Runtime)")
    parser.add_argument("--model", default=None,
                        help="preset name of the architecture (when CHECKPOINT does not say)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.export import DEFAULT_OPSET, export_onnx
    from vitkit.factory import create_model

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise CommandError(f"OUT must be a .onnx file, got {out}")
    if out.exists() and not args.force:
        raise CommandError(f"{out} already exists; choose another OUT or pass --force")
    if args.int8 == "static" and not args.calibration:
        raise CommandError("--int8 static needs calibration images: --calibration "
                           "IMAGE_OR_FOLDER ...")
    if args.calibration and args.int8 != "static":
        raise CommandError("--calibration is only used with --int8 static")
    if args.standard_ops and args.int8 != "dynamic":
        raise CommandError("--standard-ops is only used with --int8 dynamic (fp32 and "
                           "--int8 static graphs have standard operators only)")
    model = create_model(args.model, pretrained=args.checkpoint).eval()
    written = export_onnx(model, out, opset=args.opset or DEFAULT_OPSET, int8=args.int8,
                          calibration=args.calibration,
                          max_calibration_images=args.max_calibration_images,
                          standard_ops=args.standard_ops)
    height, width = model.config.img_size
    kind = f"int8 {args.int8}" if args.int8 else "fp32"
    size_mb = written.stat().st_size / 1e6
    print(f"wrote {written} (ONNX, {kind}, {size_mb:.1f} MB): input (batch, "
          f"{model.config.in_chans}, {height}, {width}), {model.config.num_classes} classes")
    return 0
