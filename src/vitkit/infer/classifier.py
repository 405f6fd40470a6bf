"""`Classifier`: a saved model as one callable, as Hugging Face users call
`pipeline("image-classification")`: `Classifier.from_pretrained(path)(images, top_k=3)`.
It shares `predict`'s preprocessing (`prepare_input`), so it agrees with `vitkit predict`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..models import VisionTransformer
from ..weights import create_pretrained
from .backends import BACKENDS, BackendChoice, build_runner, choose_backend
from .batches import model_device
from .precision import inference_dtype
from .predict import ImageInput, predict_with


class Classifier:
    """Top-k labels and scores for images: paths, PIL images or uint8 (C, H, W) tensors."""

    def __init__(self, model: VisionTransformer, device: torch.device | str | None = None,
                 fp32: bool = False, backend: str = "auto",
                 calibration: torch.Tensor | None = None) -> None:
        """`backend`: 'eager', 'compiled', 'openvino' (OpenVINO's CPU plugin), 'int8'
        (calibrated on `calibration`, uint8 images), 'onnx-int8', 'fp8' (GPUs with float8
        units) or 'auto': eager until the images classified so far would have repaid
        building a faster path, then the fastest measured (`vitkit.infer.backends`)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.device = torch.device(device) if device is not None else model_device(model)
        self.model = model.eval().to(self.device)
        self.fp32 = fp32
        self.backend, self.calibration = backend, calibration
        self.choice: BackendChoice | None = None  # what 'auto' chose last, and why
        self._runner: torch.nn.Module | None = None
        self._seen, self._next_choice = 0, 0

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: torch.device | str | None = None,
                        fp32: bool = False, backend: str = "auto",
                        calibration: torch.Tensor | None = None) -> Classifier:
        """Load any checkpoint `create_model(None, pretrained=...)` reads: a vitkit folder or
        run folder, a timm or Hugging Face folder or file, or a hub id."""
        return cls(create_pretrained(None, source, {}), device=device, fp32=fp32,
                   backend=backend, calibration=calibration)

    def __call__(self, images: ImageInput | Sequence[ImageInput], top_k: int = 5,
                 batch_size: int = 64) -> list[dict[str, float | str]] | list[list[dict]]:
        """[{"label", "score"}, ...] best first for one image, or one such list per image
        for a list (or a 4-D uint8 batch) of them; an unreadable image is a ValueError naming it."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:  # a uint8 batch
            images = list(images.unbind(0))
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        runner = self._runner_for(len(items), batch_size)
        rows = predict_with(runner, self.model, items, top_k, batch_size, self.device)
        for row in rows:
            if not row.ok:
                raise ValueError(f"{row.source}: {row.error}")
        answers = [[{"label": label, "score": score} for label, score in zip(
            row.labels, row.probs, strict=True)] for row in rows]
        return answers[0] if single else answers

    def _runner_for(self, count: int, batch_size: int) -> torch.nn.Module:
        """The module to run: built once as asked, or for 'auto' chosen again (ski-rental
        style) each time the images seen so far double, with all of them as the work."""
        self._seen += count
        if self._runner is not None and (self.backend != "auto" or self._seen < self._next_choice
                                         or self.choice.backend != "eager"):
            return self._runner
        batch = min(batch_size, max(count, 2))
        dtype = inference_dtype(self.model, self.device, batch, self.fp32)
        if self.backend == "auto":
            self.choice, self._runner = choose_backend(self.model, dtype, self.device, batch,
                                                       self._seen, self.calibration)
            self._next_choice = 2 * self._seen
        else:
            self._runner = build_runner(self.model, self.backend, dtype, self.device,
                                        self.calibration)
        return self._runner
