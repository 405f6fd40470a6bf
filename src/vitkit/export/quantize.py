"""int8 ONNX models through ONNX Runtime's quantization tools: dynamic (weights int8,
activations quantized per batch at run time) and static (activations too, with scales
calibrated on the user's images, prepared by vitkit's own preprocessing).

Only the matrix products (qkv, attention output, MLP and head; in static int8 the patch
projection too) are quantized; LayerNorm, softmax and GELU stay in float, where int8 costs
accuracy for little speed. Dynamic int8 first fuses each attention into ONNX Runtime's
`Attention` operator (`vitkit.export.fusion`), quantized as QAttention, unless asked for
standard ONNX operators only."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import find_images, load_image, model_input, spread_evenly
from ..data.images import ImageDecodeError
from ..errors import require
from ..models import Preprocessing
from .fusion import fused_attention_checked
from .metadata import INPUT_NAME, read_metadata

log = logging.getLogger("vitkit")

STATIC_OPS = ["MatMul", "Gemm", "Conv"]
# Dynamic int8 leaves the patch projection (a Conv) in float: ONNX Runtime runs it as
# ConvInteger, which took 2.2 of 26 ms per ViT-S/16 image, and without it the whole model
# ran 7% faster at batch 1 and 10% at batch 32 (AVX-512 BF16 EPYC, 2 threads).
DYNAMIC_OPS = ["MatMul", "Gemm"]
CALIBRATION_BATCH = 16


def _preprocessed(fp32: Path, work: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "pre.onnx"
    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    except Exception as error:  # noqa: BLE001 - an optional step: quantize the plain graph
        log.warning("ONNX Runtime's quantization pre-processing failed (%s); quantizing the "
                    "graph as exported", error)
        return fp32
    return out


def _attention_fused(source: Path, work: Path, meta: dict[str, Any]) -> Path | None:
    """`source` with ONNX Runtime's fused attention, checked against it on a random batch (the
    shape from vitkit's metadata `meta`), written in `work`; None where nothing fused."""
    onnx = require("onnx", "serve", "int8 export")
    num_heads = meta.get("config", {}).get("num_heads")
    if not num_heads:
        return None
    model = onnx.load(str(source))
    checked = fused_attention_checked(model, int(num_heads),
                                      (2, int(meta["in_chans"]), *meta["img_size"]))
    if checked is model:
        return None
    out = work / "fused.onnx"
    onnx.save(checked, str(out))
    return out


def quantize_dynamic_file(fp32: str | os.PathLike, out: str | os.PathLike,
                          standard_ops: bool = False) -> Path:
    """int8 weights with dynamically quantized activations (no calibration data needed).
    Each attention becomes ONNX Runtime's QAttention, unless `standard_ops` asks for a graph
    of standard ONNX operators only (for another runtime), 8-12% slower in ONNX Runtime."""
    quantization = require("onnxruntime.quantization", "serve", "int8 export")
    onnx = require("onnx", "serve", "int8 export")
    with tempfile.TemporaryDirectory(prefix="vitkit-q-") as work:
        source = _preprocessed(Path(fp32), Path(work))
        ops = DYNAMIC_OPS
        fused = None if standard_ops else _attention_fused(source, Path(work),
                                                           read_metadata(fp32))
        if fused is not None:
            source, ops = fused, DYNAMIC_OPS + ["Attention"]
        quantization.quantize_dynamic(
            str(source), str(out), weight_type=quantization.QuantType.QInt8,
            op_types_to_quantize=ops, per_channel=False,
            # attention's activation x activation products stay in float; the contrib
            # Attention node's output has no type ONNX's own shape inference can give
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return Path(out)


class ImageCalibrationReader:
    """ONNX Runtime's CalibrationDataReader over image files: batches of model inputs made by
    `vitkit.data.load_image` + `model_input`, as `vitkit predict` makes them."""

    def __init__(self, paths: Sequence[str], img_size: tuple[int, int], in_chans: int,
                 preprocessing: Preprocessing, batch_size: int = CALIBRATION_BATCH) -> None:
        self.paths = list(paths)
        self.img_size, self.in_chans, self.preprocessing = img_size, in_chans, preprocessing
        self.batch_size = batch_size
        self.used = 0
        self.skipped: list[tuple[str, str]] = []
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        mode = "L" if self.in_chans == 1 else "RGB"
        prep = self.preprocessing
        for start in range(0, len(self.paths), self.batch_size):
            pixels = []
            for path in self.paths[start:start + self.batch_size]:
                try:
                    pixels.append(load_image(path, self.img_size, mode, prep.crop_pct,
                                             prep.interpolation))
                except ImageDecodeError as error:
                    self.skipped.append((path, error.reason))
            if pixels:
                self.used += len(pixels)
                batch = model_input(torch.stack(pixels), self.img_size, prep, self.in_chans)
                yield {INPUT_NAME: batch.numpy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self.used, self.skipped, self._batches = 0, [], self._iterate()


def calibration_files(inputs: Sequence[str | os.PathLike], limit: int) -> list[str]:
    """The image files under `inputs`, at most `limit` of them spread evenly over the list."""
    files = find_images([str(i) for i in inputs])
    if not files:
        raise ValueError(f"no image files found for calibration in "
                         f"{' '.join(str(i) for i in inputs)}")
    files = [files[i] for i in spread_evenly(len(files), limit)]
    return files


def quantize_static_file(fp32: str | os.PathLike, out: str | os.PathLike,
                         calibration: Sequence[str | os.PathLike], limit: int = 512) -> Path:
    """int8 weights and activations (QLinearMatMul), with activation ranges from the
    calibration images (min/max)."""
    quantization = require("onnxruntime.quantization", "serve", "int8 export")
    meta = read_metadata(fp32)
    preprocessing = Preprocessing.from_dict(meta["preprocessing"], meta["in_chans"])
    reader = ImageCalibrationReader(calibration_files(calibration, limit),
                                    tuple(meta["img_size"]), meta["in_chans"], preprocessing)
    with tempfile.TemporaryDirectory(prefix="vitkit-q-") as work:
        source = _preprocessed(Path(fp32), Path(work))
        quantization.quantize_static(
            # QOperator (QLinearMatMul) runs faster than QDQ on ONNX Runtime's CPU provider
            # (measured: 1.7x fp32 against 1.2x), per-tensor scales at no accuracy cost.
            str(source), str(out), reader, quant_format=quantization.QuantFormat.QOperator,
            op_types_to_quantize=STATIC_OPS, per_channel=False,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True, "ActivationSymmetric": False},
        )
    if reader.used == 0:
        raise ValueError("none of the calibration images could be decoded (first: "
                         f"{reader.skipped[0][0]}: {reader.skipped[0][1]})")
    log.info("calibrated on %d images (%d skipped)", reader.used, len(reader.skipped))
    return Path(out)
