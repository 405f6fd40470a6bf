"""What the server runs: a vitkit checkpoint through PyTorch, or an exported ONNX file through
ONNX Runtime, behind one small interface (uint8 pixels in, logits out, model facts)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..analysis import attention_rollout
from ..data import load_image, model_input
from ..device import default_device, default_dtype
from ..export import OnnxClassifier
from ..infer.batches import inference_module
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
                "explain": self.can_explain}


class TorchBackend(Backend):
    """A vitkit model run by PyTorch (bf16 only where the hardware is native at it)."""

    kind = "torch"
    can_explain = True

    def __init__(self, model: VisionTransformer, device: str | torch.device | None = None,
                 fp32: bool = False) -> None:
        self.device = torch.device(device or default_device())
        self.model = model.to(self.device).eval()
        self.runner = inference_module(self.model, default_dtype(self.device, fp32=fp32),
                                       self.device)
        config, meta = model.config, model.meta
        self.name = meta.name or "vitkit model"
        self.class_names = meta.class_names or [str(i) for i in range(config.num_classes)]
        self.img_size, self.in_chans = tuple(config.img_size), config.in_chans
        self.preprocessing = meta.preprocessing
        self.num_parameters = sum(p.numel() for p in model.parameters())

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


def load_backend(path: str | os.PathLike, device: str | None = None,
                 fp32: bool = False) -> Backend:
    """An .onnx file gives an OnnxBackend, anything else is loaded as a vitkit checkpoint."""
    if Path(path).suffix == ".onnx":
        return OnnxBackend(path)
    return TorchBackend(load_pretrained(path), device=device, fp32=fp32)
