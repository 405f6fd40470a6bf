"""Running an exported ONNX file with ONNX Runtime, its inputs prepared exactly as vitkit
prepares them for the PyTorch model, from what the file's metadata says; and ONNX Runtime
int8 as one of the inference paths `vitkit.infer.backends` chooses from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_image, model_input
from ..errors import check_fixed_input, require
from ..models import Preprocessing, VisionTransformer
from .metadata import read_metadata
from .onnx import export_onnx


class OnnxClassifier:
    """An exported vitkit model in an ONNX Runtime session: `logits(inputs)` on normalised
    float batches, `inputs(pixels)` to make them from uint8 pixels, and what the model needs
    (`img_size`, `in_chans`, `preprocessing`, `class_names`) read back from the metadata."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = require("onnxruntime", "serve", "running an ONNX model")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        self.path = path
        self.metadata: dict[str, Any] = read_metadata(path)
        self.img_size: tuple[int, int] = tuple(self.metadata["img_size"])
        self.in_chans: int = int(self.metadata["in_chans"])
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"],
                                                     self.in_chans)
        self.name: str = self.metadata.get("name") or path.stem
        self.num_parameters: int | None = self.metadata.get("num_parameters")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Workers spin between the operators of one run, where waking a sleeping thread at
        # each of ~200 nodes cost ViT-S/16 at batch 1 a tenth of its speed (48 against 43
        # images/s), and stop spinning when the run returns: threads left spinning took the
        # CPU from whatever ran next in the process (PyTorch beside it: 15 against 22).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) pixels to the normalised float32 batch the graph takes."""
        return model_input(pixels, self.img_size, self.preprocessing, self.in_chans)

    def logits(self, inputs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits (B, num_classes) for a normalised float32 batch (B, C, H, W)."""
        array = inputs.numpy() if isinstance(inputs, torch.Tensor) else inputs
        array = np.ascontiguousarray(array, dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """One image file as uint8 (C, H, W) at the model's size (`vitkit.data.load_image`)."""
        prep = self.preprocessing
        mode = "L" if self.in_chans == 1 else "RGB"
        return load_image(path, self.img_size, mode, prep.crop_pct, prep.interpolation)


class ArrayRunner(nn.Module):
    """Another runtime behind the interface of vitkit's other inference paths: a module
    taking normalised images (any float dtype, on the CPU) and returning fp32 logits, which
    `logits` computes from them as one contiguous float32 array."""

    dtype = torch.float32  # what it takes in
    backend = ""  # the inference path's name, for errors
    input_shape: tuple[int, int, int]  # (C, H, W): the graph runs these images only

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_fixed_input(images.shape, self.input_shape, self.backend)
        return self.logits(np.ascontiguousarray(images.detach().float().cpu().numpy()))

    def logits(self, array: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True) -> ArrayRunner:
        """Only ever an inference graph: the mode is recorded and nothing else changes."""
        self.training = mode
        return self


class OnnxRunner(ArrayRunner):
    """An ONNX Runtime session as an inference path."""

    backend = "onnx-int8"

    def __init__(self, classifier: OnnxClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.input_shape = (classifier.in_chans, *classifier.img_size)

    def logits(self, array: np.ndarray) -> torch.Tensor:
        return self.classifier.logits(array)


def onnx_int8_runner(model: VisionTransformer, threads: int | None = None) -> OnnxRunner:
    """`model` exported and quantized to int8 for ONNX Runtime (`export_onnx(int8="dynamic")`:
    int8 weights, activations quantized per batch, so it needs no calibration images) and
    loaded, ready to run; the file is written to a temporary folder and gone on return."""
    with tempfile.TemporaryDirectory(prefix="vitkit-onnx-int8-") as folder:
        path = export_onnx(model, Path(folder) / "int8.onnx", int8="dynamic")
        return OnnxRunner(OnnxClassifier(path, threads=threads))  # the session holds the graph
