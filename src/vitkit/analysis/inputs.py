"""Image files to analysis inputs, prepared exactly as `vitkit predict` and `vitkit eval`
prepare them (`vitkit.infer.prepare_input`)."""

from __future__ import annotations

import os

import torch

from ..data.images import ImageDecodeError
from ..infer.batches import model_inputs
from ..infer.predict import prepare_input
from ..models import VisionTransformer


def load_images(
    paths: list[str | os.PathLike], model: VisionTransformer
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[tuple[str, str]]]:
    """Decode and prepare images for `model`: (preprocessed float (B, C, H, W), the uint8
    pixels it saw (B, C, H, W), names, skipped [(path, reason)]). Unreadable files are
    skipped, not fatal."""
    if model.config.in_chans not in (1, 3):
        raise ValueError("image files can be analysed with 1- or 3-channel models, not "
                         f"{model.config.in_chans}")
    raw, names, skipped = [], [], []
    for path in paths:
        try:
            raw.append(prepare_input(model, path))
        except ImageDecodeError as error:
            skipped.append((str(path), error.reason))
            continue
        names.append(os.path.basename(path))
    if not raw:
        return torch.empty(0), torch.empty(0, dtype=torch.uint8), names, skipped
    pixels = torch.stack(raw)
    return model_inputs(model, pixels, torch.device("cpu")), pixels, names, skipped
