"""What the server runs: a vitkit checkpoint through PyTorch, or an exported ONNX file through
ONNX Runtime, behind one small interface (uint8 pixels in, logits out, model facts)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..analysis import attention_rollout
from ..data import find_images, load_image, model_input
from ..device import default_device
from ..export import OnnxClassifier
from ..infer.backends import build_runner, choose_backend
from ..infer.precision import inference_dtype
from ..infer.predict import calibration_images
from ..models import Preprocessing, VisionTransformer, evaluating
from ..weights import load_pretrained


class ExplainUnsupported(RuntimeError):
    """The backend cannot compute an attention rollout (an ONNX graph has no attention maps)."""


class Backend:
    """A classifier the server can run: its facts, and `logits` on normalised batches."""

    kind: str = ""
    name: str
    class_names: list[str]
    img_size: tuple[int, int]
    in_chans: int
    preprocessing: Preprocessing
    num_parameters: int | None
    quantization: str = "none"
    path: str = "onnxruntime"  # what runs the model: eager, compiled, int8, onnxruntime
    can_explain: bool = False

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """One image file as uint8 (C, H, W) at the model's size (`vitkit.data.load_image`)."""
        prep = self.preprocessing
        mode = "L" if self.in_chans == 1 else "RGB"
        return load_image(path, self.img_size, mode, prep.crop_pct, prep.interpolation)

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) to the normalised float32 batch (`vitkit.data.model_input`)."""
        return model_input(pixels, self.img_size, self.preprocessing, self.in_chans)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rollout(self, inputs: torch.Tensor) -> torch.Tensor:
        """Attention rollout (B, gh, gw) for normalised inputs."""
        raise ExplainUnsupported(f"{self.kind} models have no attention maps to explain with")

    def describe(self) -> dict[str, Any]:
        """What GET /v1/model answers."""
        return {"name": self.name, "backend": self.kind, "classes": self.class_names,
                "num_classes": len(self.class_names), "input_size": list(self.img_size),
                "in_chans": self.in_chans, "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
                "interpolation": self.preprocessing.interpolation,
                "crop_pct": self.preprocessing.crop_pct,
                "num_parameters": self.num_parameters, "quantization": self.quantization,
                "path": self.path, "explain": self.can_explain}


class TorchBackend(Backend):
    """A vitkit model run by PyTorch (bf16 only where the CPU has bf16 units and bf16 is the
    faster for this model, `vitkit.infer.precision`)."""

    kind = "torch"
    can_explain = True

    def __init__(self, model: VisionTransformer, device: str | torch.device | None = None,
                 fp32: bool = False, backend: str = "eager", max_batch: int = 32,
                 calibration: torch.Tensor | None = None) -> None:
        """`backend`: 'eager', 'compiled', 'openvino', 'int8' (calibrated on `calibration`),
        'onnx-int8', 'fp8' (GPUs with float8 units) or 'auto': the fastest at `max_batch`
        images, measured (`vitkit.infer.backends`). A compiled path is warmed at batch 1 and
        `max_batch` here, so no request waits for the compiler."""
        self.device = torch.device(device or default_device())
        self.model = model.to(self.device).eval()
        dtype = inference_dtype(self.model, self.device, max_batch, fp32)
        self.choice = None
        if backend == "auto":
            self.choice, self.runner = choose_backend(self.model, dtype, self.device,
                                                      max_batch, None, calibration)
            backend = self.choice.backend
        else:
            self.runner = build_runner(self.model, backend, dtype, self.device, calibration)
        self.path = backend
        self.quantization = {"int8": "int8 static",
                             "onnx-int8": "int8 dynamic",
                             "fp8": "float8 dynamic"}.get(backend, "none")
        config, meta = model.config, model.meta
        self.name = meta.name or "vitkit model"
        self.class_names = meta.class_names or [str(i) for i in range(config.num_classes)]
        self.img_size, self.in_chans = tuple(config.img_size), config.in_chans
        self.preprocessing = meta.preprocessing
        self.num_parameters = sum(p.numel() for p in model.parameters())
        if backend != "eager":
            for batch in (1, max(max_batch, 2)):
                self.logits(self.inputs(torch.zeros(batch, model.config.in_chans,
                                                    *model.config.img_size, dtype=torch.uint8)))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        with evaluating(self.runner):
            return self.runner(inputs.to(self.device)).float().cpu()

    def rollout(self, inputs: torch.Tensor) -> torch.Tensor:
        return attention_rollout(self.model, inputs.to(self.device))


class OnnxBackend(Backend):
    """An ONNX file exported by `vitkit export`, run by ONNX Runtime."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike) -> None:
        self.classifier = OnnxClassifier(path)
        c = self.classifier
        self.name, self.class_names = c.name, c.class_names
        self.img_size, self.in_chans, self.preprocessing = c.img_size, c.in_chans, c.preprocessing
        self.num_parameters = c.num_parameters
        self.quantization = c.metadata.get("quantization", "none")

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier.logits(inputs)


def load_backend(path: str | os.PathLike, device: str | None = None, fp32: bool = False,
                 backend: str = "auto", max_batch: int = 32,
                 calibration: Sequence[str | os.PathLike] | None = None,
                 calibration_limit: int = 512) -> Backend:
    """An .onnx file gives an OnnxBackend, anything else is loaded as a vitkit checkpoint
    run on `backend` (int8 calibrated on at most `calibration_limit` of the `calibration`
    image files)."""
    if Path(path).suffix == ".onnx":
        return OnnxBackend(path)
    model = load_pretrained(path)
    pixels = calibration_images(model, find_images([str(c) for c in calibration]),
                                calibration_limit) \
        if calibration else None
    return TorchBackend(model, device=device, fp32=fp32, backend=backend,
                        max_batch=max_batch, calibration=pixels)
