"""Running an exported ONNX file with ONNX Runtime, its inputs prepared exactly as vitkit
prepares them for the PyTorch model, from what the file's metadata says."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_image, model_input
from ..data.decode import default_workers
from ..data.images import ImageDecodeError
from ..errors import renamed_keyword, require
from ..infer import Prediction
from ..models import Preprocessing
from .metadata import read_metadata


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
        # Idle workers sleep instead of spinning: spinning threads took the CPU from whatever
        # ran next in the process (measured: timm and vitkit at 0.6-0.8x of their speed).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def predict_onnx(
    classifier: OnnxClassifier, paths: Sequence[str | os.PathLike], top_k: int = 5,
    batch_size: int = 64, *, topk: int | None = None,
) -> list[Prediction]:
    """Top-`top_k` predictions for image files through ONNX Runtime, in input order; an
    unreadable file becomes an error row (as `vitkit.infer.predict`; `topk=` is deprecated)."""
    top_k = renamed_keyword("predict_onnx", "topk", "top_k", topk, top_k)
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    k = min(top_k, classifier.num_classes)

    def prepare(path: str | os.PathLike) -> torch.Tensor | str:
        try:
            return classifier.load(path)
        except ImageDecodeError as error:
            return error.reason

    rows: list[Prediction] = []
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            prepared = list(pool.map(prepare, chunk))
            batch = [Prediction(str(p)) for p in chunk]
            good = [i for i, p in enumerate(prepared) if isinstance(p, torch.Tensor)]
            for i, p in enumerate(prepared):
                if isinstance(p, str):
                    batch[i].error = p
            if good:
                pixels = torch.stack([prepared[i] for i in good])
                top = classifier.logits(classifier.inputs(pixels)).softmax(dim=1).topk(k, dim=1)
                for i, values, indices in zip(good, top.values.tolist(), top.indices.tolist(),
                                              strict=True):
                    batch[i].indices, batch[i].probs = indices, values
                    batch[i].labels = [classifier.class_names[j] for j in indices]
            rows.extend(batch)
    return rows
