"""OpenVINO as one of the inference paths `vitkit.infer.backends` chooses from: the model
traced into OpenVINO's graph and compiled by its CPU plugin, which fuses each attention block
into one kernel (on a 2-core Xeon with AMX it ran ViT-S/16 at batch 1 1.2-1.5x as fast as
vitkit's int8 graph and 1.5-1.8x as fast as its compiled bf16 one; at ViT-B/16 batch 1 level
with int8, and at batch 32 level with the compiled path and behind int8;
`benchmarks/inference_paths.py`). It computes in the run's own dtype, bf16 or fp32, so its
answers are the model's, not int8's. Needs the `openvino` extra."""

from __future__ import annotations

import threading
import warnings
from importlib import metadata

import numpy as np
import torch

from ..errors import require
from ..models import VisionTransformer, evaluating
from .onnx import float_on_cpu
from .runtime import ArrayRunner

# What OpenVINO computes in for each of vitkit's CPU dtypes (its INFERENCE_PRECISION_HINT).
PRECISIONS = {torch.float32: "f32", torch.bfloat16: "bf16"}


def openvino_version() -> str:
    """The installed OpenVINO's version, read without importing it ('not installed' where it
    is not): its speed is part of a measured figure's recipe."""
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return "not installed"


class OpenVinoRunner(ArrayRunner):
    """A model compiled by OpenVINO's CPU plugin as an inference path; `precision` is what
    OpenVINO computes in ('bf16' or 'f32'). Calls from several threads take turns (an infer
    request runs one batch at a time)."""

    backend = "openvino"

    def __init__(self, compiled: object, config: object, precision: str) -> None:
        super().__init__()
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.config = config
        self.input_shape = (config.in_chans, *config.img_size)
        self.precision = precision
        self.lock = threading.Lock()

    def logits(self, array: np.ndarray) -> torch.Tensor:
        with self.lock:
            logits = self.request.infer({0: array})[0]  # a copy, not the request's buffer
        return torch.from_numpy(logits)


def openvino_runner(model: VisionTransformer, dtype: torch.dtype = torch.float32,
                    threads: int | None = None) -> OpenVinoRunner:
    """`model` converted to OpenVINO (traced at batch 1, any batch size accepted after) and
    compiled for the CPU to compute in `dtype` (bf16 or fp32; bf16 where OpenVINO has kernels
    for it on this CPU, else fp32) on `threads` threads (default: PyTorch's), tuned for the
    latency of one call at a time. The model is left untouched."""
    ov = require("openvino", "openvino", "the openvino inference path")
    if dtype not in PRECISIONS:
        raise ValueError(f"backend='openvino' computes in torch.float32 or torch.bfloat16, "
                         f"not {dtype}")
    config = model.config
    example = torch.zeros(1, config.in_chans, *config.img_size)
    traced = float_on_cpu(model)  # OpenVINO applies the precision itself
    with evaluating(traced), warnings.catch_warnings(), torch.no_grad():
        # OpenVINO converts a module by tracing it, which warns at each shape check in the
        # model's forward (shapes are fixed below) and that tracing is deprecated. Converting
        # `torch.export`'s graph instead ran ViT-S/16 0.80-0.85x as fast (measured on a Xeon
        # with AMX, batch 1 and 32), so tracing stays while torch has it.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=FutureWarning)
        # Weights copied, not shared with the model's tensors: changing the model afterwards
        # (training on) must not change the runner's answers.
        graph = ov.convert_model(traced, example_input=example, share_weights=False,
                                 input=[(-1, config.in_chans, *config.img_size)])
    compiled = ov.Core().compile_model(graph, "CPU", {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": PRECISIONS[dtype],
        "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
    })
    # What it computes in, as OpenVINO reports it: a CPU it has no bf16 kernels for keeps f32.
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return OpenVinoRunner(compiled, config, precision).eval()
