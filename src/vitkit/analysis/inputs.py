"""Image files to analysis inputs: find them, decode them with PIL, resize them to the model's
resolution and normalise them with its preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.transforms import v2

from ..data.images import ImageDecodeError, decode_image, is_image_file
from ..models import VisionTransformer
from ..weights.io import preprocessing_of

INTERPOLATIONS = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Image files among `paths`: files as given, folders searched recursively by file ending
    (hidden files and folders left out)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*")
                if p.is_file() and is_image_file(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no image or folder at {path}")
    return found


def load_images(
    paths: list[Path], model: VisionTransformer
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[tuple[str, str]]]:
    """Decode and prepare images for `model`: (preprocessed float (B, C, H, W), resized uint8
    (B, C, H, W), names, skipped [(path, reason)]). Unreadable files are skipped, not fatal.

    Images are decoded upright in RGB (or L for 1-channel models) and resized to the model's
    img_size without cropping, then normalised with its preprocessing mean and std.
    """
    prep = preprocessing_of(model)
    chans = model.config.in_chans
    if chans not in (1, 3):
        raise ValueError(f"image files can be analysed with 1- or 3-channel models, not {chans}")
    mode = "L" if chans == 1 else "RGB"
    interpolation = INTERPOLATIONS.get(str(prep.get("interpolation")), INTERPOLATIONS["bicubic"])
    resize = v2.Compose([v2.PILToTensor(),
                         v2.Resize(list(model.config.img_size), interpolation, antialias=True)])
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(prep["mean"], prep["std"])])
    raw, names, skipped = [], [], []
    for path in paths:
        try:
            pixels = resize(decode_image(path, mode))
        except ImageDecodeError as error:
            skipped.append((str(path), error.reason))
            continue
        raw.append(pixels)
        names.append(path.name)
    if not raw:
        return torch.empty(0), torch.empty(0, dtype=torch.uint8), names, skipped
    pixels = torch.stack(raw)
    return normalise(pixels), pixels, names, skipped
