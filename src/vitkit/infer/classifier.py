"""`Classifier`: a saved model as one callable, as Hugging Face users call
`pipeline("image-classification")`: `Classifier.from_pretrained(path)(images, top_k=3)`.
It shares `predict`'s preprocessing (`prepare_input`), so it agrees with `vitkit predict`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..models import VisionTransformer
from ..weights import create_pretrained
from .predict import ImageInput, predict


class Classifier:
    """Top-k labels and scores for images: paths, PIL images or uint8 (C, H, W) tensors."""

    def __init__(self, model: VisionTransformer, device: torch.device | str | None = None,
                 fp32: bool = False) -> None:
        self.model = model.eval()
        self.device = device
        self.fp32 = fp32

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: torch.device | str | None = None,
                        fp32: bool = False) -> Classifier:
        """Load any checkpoint `create_model(None, pretrained=...)` reads: a vitkit folder or
        run folder, a timm or Hugging Face folder or file, or a hub id."""
        return cls(create_pretrained(None, source, {}), device=device, fp32=fp32)

    def __call__(self, images: ImageInput | Sequence[ImageInput], top_k: int = 5,
                 batch_size: int = 64) -> list[dict[str, float | str]] | list[list[dict]]:
        """[{"label", "score"}, ...] best first for one image, or one such list per image
        for a list (or a 4-D uint8 batch) of them; an unreadable image is a ValueError naming it."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:  # a uint8 batch
            images = list(images.unbind(0))
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        rows = predict(self.model, items, top_k=top_k, batch_size=batch_size,
                       device=self.device, fp32=self.fp32)
        for row in rows:
            if not row.ok:
                raise ValueError(f"{row.source}: {row.error}")
        answers = [[{"label": label, "score": score} for label, score in zip(
            row.labels, row.probs, strict=True)] for row in rows]
        return answers[0] if single else answers
