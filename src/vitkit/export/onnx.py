"""Export a vitkit ViT to ONNX: one graph with a dynamic batch dimension at the model's native
image size (E_pos baked in, nothing resampled at run time), and everything a runtime needs to
prepare its inputs (class names, preprocessing, image size) in the file's metadata."""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import require
from ..files import atomic_write
from ..models import VisionTransformer, evaluating
from .metadata import INPUT_NAME, OUTPUT_NAME, metadata_for, set_metadata
from .quantize import quantize_dynamic_file, quantize_static_file

DEFAULT_OPSET = 17  # the first with a LayerNormalization operator
MIN_OPSET = 14
INT8_MODES = ("dynamic", "static")


def _check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ValueError(f"--opset must be at least {MIN_OPSET} (attention needs it), got {opset}")


def float_on_cpu(model: VisionTransformer) -> VisionTransformer:
    """`model` itself where it is fp32 on the CPU, as tracing for another runtime needs it,
    else an fp32 CPU copy (the caller's model stays as it is)."""
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
        return copy.deepcopy(model).float().cpu()
    return model


def export_fp32(model: VisionTransformer, path: str | os.PathLike,
                opset: int = DEFAULT_OPSET) -> Path:
    """The fp32 graph of `model` (on the CPU) at its native size, batch dimension dynamic."""
    require("onnx", "serve", "ONNX export")
    _check_opset(opset)
    model = float_on_cpu(model)
    height, width = model.config.img_size
    example = torch.zeros(2, model.config.in_chans, height, width)
    path = Path(path)

    def write(tmp: str) -> None:
        # The TorchScript exporter: fast, offline, and its plain MatMul/Softmax graph is what
        # ONNX Runtime's quantizer knows best.
        torch.onnx.export(
            model, (example,), tmp, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )

    with evaluating(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks
        atomic_write(path, write)
    set_metadata(path, metadata_for(model))
    return path


def export_onnx(
    model: VisionTransformer,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    int8: str | None = None,
    calibration: Sequence[str | os.PathLike] | None = None,
    max_calibration_images: int = 512,
    standard_ops: bool = False,
) -> Path:
    """Export `model` to an ONNX file at `path`, in fp32 or, with `int8`, quantized:

    - `int8="dynamic"`: int8 weights, activations quantized per batch at run time, each
      attention one QAttention of ONNX Runtime's contrib operators (`standard_ops=True`: a
      graph of standard ONNX operators only, for other runtimes);
    - `int8="static"`: int8 weights and activations, scales calibrated on the image files in
      `calibration` (prepared exactly as `vitkit predict` prepares them).

    The metadata carries class names, preprocessing and image size (`read_metadata`).
    """
    if int8 is not None and int8 not in INT8_MODES:
        raise ValueError(f"--int8 must be one of {', '.join(INT8_MODES)}, got {int8!r}")
    if int8 == "static" and not calibration:
        raise ValueError("--int8 static needs calibration images: --calibration IMAGE_OR_FOLDER")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"no folder {path.parent} to write {path.name} into")
    if int8 is None:
        return export_fp32(model, path, opset)
    with tempfile.TemporaryDirectory(prefix="vitkit-onnx-") as work:
        fp32 = export_fp32(model, Path(work) / "fp32.onnx", opset)
        if int8 == "dynamic":
            quantize_dynamic_file(fp32, path, standard_ops)
        else:
            quantize_static_file(fp32, path, calibration or [], max_calibration_images)
    set_metadata(path, metadata_for(model, quantization=f"int8-{int8}"))
    return path
