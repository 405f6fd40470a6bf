"""The --backend and --calibration flags of predict, eval and serve: which inference path runs
the model (`vitkit.infer.backends`), and the images an int8 path calibrates on."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .main import CommandError

# `vitkit.infer.backends.BACKENDS`, spelled here so that --help does not import torch
# (tests/test_backends.py checks the two agree).
PATHS = ("auto", "eager", "compiled", "openvino", "int8", "onnx-int8", "fp8")


def add_backend_options(add: Callable, serving: bool = False, onnx: bool = False,
                        evaluation: bool = False) -> None:
    """Add --backend, --calibration and --max-calibration-images through `add`."""
    work = "serving" if serving else "this many images"
    choices = PATHS + (("onnx", "torch") if onnx else ())
    auto = ("eager, compiled or openvino, whichever is faster (int8 only when asked: the "
            "accuracy reported is the model's own)" if evaluation else
            f"the fastest path for {work} on this CPU, timed once and cached (openvino where "
            "installed, the int8 paths only with --calibration)")
    add("--backend", choices=choices, default="auto",
        help="eager, compiled (torch.compile, frozen weights), openvino (OpenVINO's CPU "
        "plugin, same dtype; pip install vitkit[openvino]), int8 (static, calibrated), "
        "onnx-int8 (ONNX Runtime, int8 dynamic), fp8 (float8 linear layers, on GPUs of "
        "compute capability 8.9+) "
        + ("or onnx (ONNX Runtime, the default for an .onnx file); " if onnx else "or ")
        + f"auto (default): {auto}")
    add("--calibration", nargs="+", default=None, metavar="IMAGE_OR_FOLDER",
        help="images to calibrate int8 activations on (a few hundred suffice)"
        + ("; default for eval: the train split" if evaluation else ""))
    add("--max-calibration-images", type=int, default=512,
        help="calibrate on at most this many images, spread evenly (512)")


def check_backend_options(args: argparse.Namespace, evaluation: bool = False) -> None:
    """Flags that contradict each other, refused before anything is loaded."""
    if args.backend == "torch":  # the old spelling of the PyTorch eager path
        args.backend = "eager"
    if args.backend == "int8" and not args.calibration and not evaluation:
        raise CommandError("--backend int8 needs images to calibrate on: --calibration "
                           "IMAGE_OR_FOLDER ...")
    if args.calibration and args.backend not in ("int8", "auto"):
        raise CommandError(f"--calibration is for --backend int8 (or auto), not "
                           f"--backend {args.backend}")
    if args.max_calibration_images < 1:
        raise CommandError("--max-calibration-images must be at least 1")
