"""`predict`: top-k classes for image files (or PIL images / uint8 tensors), preprocessed the
way the model was saved, in batches; an unreadable file becomes an error row, not a crash."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.decode import default_workers
from ..data.images import ImageDecodeError, _to_mode, decode_image, is_image_file
from ..data.transforms import eval_resize_crop, normalize
from ..device import default_dtype
from ..models import VisionTransformer
from ..weights.io import preprocessing_of
from .batches import eval_mode, inference_module, model_device

ImageInput = str | os.PathLike | Image.Image | torch.Tensor


@dataclass
class Prediction:
    """The top-k classes of one input, best first; `error` says why there are none."""

    source: str
    labels: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, folders replaced by the image files inside them (recursively, sorted).

    Paths that do not exist are kept, so that they are reported as error rows.
    """
    out: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.rglob("*"))
                       if p.is_file() and is_image_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            out.append(str(path))
    return out


def _as_uint8(item: ImageInput, mode: str, min_size: tuple[int, int] | None = None
              ) -> torch.Tensor:
    """One input as a uint8 (C, H, W) tensor; raises ImageDecodeError for unreadable files."""
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or item.ndim != 3:
            raise ImageDecodeError("<tensor>", f"expected uint8 (C, H, W), got {item.dtype} "
                                   f"{tuple(item.shape)}")
        return item
    if isinstance(item, Image.Image):
        image = _to_mode(item, mode)
    else:
        image = decode_image(item, mode, min_size=min_size)
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _name(item: ImageInput, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<{type(item).__name__} {index}>"


def predict(
    model: VisionTransformer,
    paths_or_images: Sequence[ImageInput],
    topk: int = 5,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    fp32: bool = False,
) -> list[Prediction]:
    """Top-`topk` predictions for each input, in input order.

    Each image is resized and centre-cropped as in timm's evaluation (see
    `vitkit.data.transforms.eval_resize_crop`) with the model's saved img_size, crop_pct and
    interpolation, then normalised with its mean/std. Computes in bf16 only where the
    hardware is native at it (`vitkit.device.default_dtype`), fp32 when `fp32` is set.
    Large JPEGs are decoded at a reduced DCT scale, never below the size the resize needs.
    """
    if topk < 1:
        raise ValueError(f"--topk must be at least 1, got {topk}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    dtype = default_dtype(device, fp32=fp32)
    prep = preprocessing_of(model)
    mode = "L" if model.config.in_chans == 1 else "RGB"
    names = model.class_names or [str(i) for i in range(model.config.num_classes)]
    k = min(topk, model.config.num_classes)
    crop_pct = float(prep.get("crop_pct", 1.0))
    min_size = tuple(math.ceil(s / crop_pct) for s in prep["img_size"])  # JPEG draft bound
    results: list[Prediction] = []

    def prepare(item: ImageInput) -> torch.Tensor | str:
        try:
            image = _as_uint8(item, mode, min_size)
            return eval_resize_crop(image, prep["img_size"], crop_pct,
                                    prep.get("interpolation", "bicubic"))
        except ImageDecodeError as error:
            return error.reason
        except (ValueError, RuntimeError, MemoryError) as error:
            return f"could not preprocess: {error}"

    runner = inference_module(model, dtype, device)
    with ThreadPoolExecutor(max_workers=default_workers()) as pool, eval_mode(runner):
        for start in range(0, len(paths_or_images), batch_size):
            chunk = list(paths_or_images[start:start + batch_size])
            prepared = list(pool.map(prepare, chunk))
            good = [i for i, p in enumerate(prepared) if isinstance(p, torch.Tensor)]
            rows = [Prediction(_name(item, start + i)) for i, item in enumerate(chunk)]
            for i, p in enumerate(prepared):
                if isinstance(p, str):
                    rows[i].error = p
            if good:
                batch = torch.stack([prepared[i] for i in good]).to(device)
                inputs = normalize(batch, prep["mean"], prep["std"])
                logits = runner(inputs)
                probs = logits.float().softmax(dim=1)
                top = probs.topk(k, dim=1)
                for row_index, values, indices in zip(good, top.values.tolist(),
                                                      top.indices.tolist(), strict=True):
                    row = rows[row_index]
                    row.indices = indices
                    row.probs = values
                    row.labels = [names[j] for j in indices]
            results.extend(rows)
    return results
