"""`predict`: top-k classes for image files (or PIL images / uint8 tensors), preprocessed the
way the model was saved, in batches; an unreadable file becomes an error row, not a crash.
`predict_onnx` does the same for an exported ONNX file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..data import spread_evenly
from ..data.decode import default_workers, load_image
from ..data.images import ImageDecodeError, to_tensor
from ..data.transforms import resize_crop
from ..errors import renamed_keyword
from ..models import VisionTransformer, evaluating
from .backends import select_runner
from .batches import model_device, model_inputs
from .precision import inference_dtype

if TYPE_CHECKING:
    from ..export import OnnxClassifier

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


def prepare_input(model: VisionTransformer | OnnxClassifier, item: ImageInput) -> torch.Tensor:
    """One input (a file, a PIL image, or uint8 (C, H, W) pixels) as uint8 pixels at the
    model's size, prepared as `vitkit.data.load_image` prepares every file; raises
    ImageDecodeError for unreadable files. `model` may be an exported file's
    `OnnxClassifier`, whose metadata says the same things."""
    if hasattr(model, "config"):
        config, prep = model.config, model.meta.preprocessing
        size, in_chans = config.img_size, config.in_chans
    else:
        size, in_chans, prep = model.img_size, model.in_chans, model.preprocessing
    mode = "L" if in_chans == 1 else "RGB"
    if isinstance(item, (str, os.PathLike)):
        return load_image(item, size, mode, prep.crop_pct, prep.interpolation)
    if isinstance(item, Image.Image):
        pixels = to_tensor(item, mode)
    elif isinstance(item, torch.Tensor) and item.dtype == torch.uint8 and item.ndim == 3:
        pixels = item
    else:
        shown = (f"{item.dtype} {tuple(item.shape)}" if isinstance(item, torch.Tensor)
                 else type(item).__name__)
        raise ImageDecodeError("<input>", f"expected a file, a PIL image or uint8 (C, H, W) "
                               f"pixels, got {shown}")
    return resize_crop(pixels, size, prep.crop_pct, prep.interpolation)


def _name(item: ImageInput, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<{type(item).__name__} {index}>"


def predict(
    model: VisionTransformer,
    paths_or_images: Sequence[ImageInput],
    top_k: int = 5,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    fp32: bool = False,
    *,
    backend: str = "auto",
    calibration: torch.Tensor | None = None,
    topk: int | None = None,
) -> list[Prediction]:
    """Top-`top_k` predictions for each input, in input order (`topk=` is the deprecated
    spelling of `top_k=`).

    Each image is prepared as `vitkit eval` prepares its files (`prepare_input`: resized and
    centre-cropped by the model's img_size, crop_pct and interpolation), then normalised
    with its mean/std. Computes in bf16 only where the hardware has bf16 units and bf16 is
    the faster for this model (`vitkit.infer.precision`), fp32 when `fp32` is set.
    `backend` is 'eager', 'compiled', 'int8' (needs `calibration`: uint8 images, see
    `calibration_images`) or 'auto': the fastest for this many images, measured
    (`vitkit.infer.backends`).
    """
    top_k = renamed_keyword("predict", "topk", "top_k", topk, top_k)
    _check_sizes(top_k, batch_size)
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    if not paths_or_images:
        return []
    batch = min(batch_size, len(paths_or_images))
    runner = select_runner(model, backend, inference_dtype(model, device, batch, fp32), device,
                           batch, len(paths_or_images), calibration)
    return predict_with(runner, model, paths_or_images, top_k, batch_size, device)


def predict_with(runner: torch.nn.Module, model: VisionTransformer,
                 paths_or_images: Sequence[ImageInput], top_k: int, batch_size: int,
                 device: torch.device) -> list[Prediction]:
    """`predict` through a module already chosen (`vitkit.infer.backends`) for `model`."""
    names = model.meta.class_names or [str(i) for i in range(model.config.num_classes)]
    with evaluating(runner):
        return _rows(paths_or_images, lambda item: _prepared_or_reason(model, item),
                     lambda pixels: runner(model_inputs(model, pixels, device)), names,
                     top_k, batch_size)


def predict_onnx(
    classifier: OnnxClassifier, paths_or_images: Sequence[ImageInput], top_k: int = 5,
    batch_size: int = 64, *, topk: int | None = None,
) -> list[Prediction]:
    """`predict` for an exported file (`vitkit export`) through ONNX Runtime: each input (a
    file, a PIL image or uint8 (C, H, W) pixels) prepared as the file's metadata says, in
    input order, an unreadable one an error row (`topk=` is the deprecated spelling of
    `top_k=`)."""
    top_k = renamed_keyword("predict_onnx", "topk", "top_k", topk, top_k)
    _check_sizes(top_k, batch_size)
    return _rows(paths_or_images, lambda item: _prepared_or_reason(classifier, item),
                 lambda pixels: classifier.logits(classifier.inputs(pixels)),
                 classifier.class_names, top_k, batch_size)


def _check_sizes(top_k: int, batch_size: int) -> None:
    """Refuse a top_k or batch_size under 1, before any path is built or file read."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")


def _rows(items: Sequence[Any], prepare: Callable[[Any], torch.Tensor | str],
          logits: Callable[[torch.Tensor], torch.Tensor], names: Sequence[str], top_k: int,
          batch_size: int) -> list[Prediction]:
    """The batching both predictions share: inputs prepared on worker threads (a reason in
    place of the pixels for one that could not be), the good ones run together."""
    k = min(top_k, len(names))
    results: list[Prediction] = []
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        for start in range(0, len(items), batch_size):
            chunk = list(items[start:start + batch_size])
            prepared = list(pool.map(prepare, chunk))
            rows = [Prediction(_name(item, start + i)) for i, item in enumerate(chunk)]
            good = [i for i, p in enumerate(prepared) if isinstance(p, torch.Tensor)]
            for i, p in enumerate(prepared):
                if isinstance(p, str):
                    rows[i].error = p
            if good:
                pixels = torch.stack([prepared[i] for i in good])
                top = logits(pixels).float().softmax(dim=1).topk(k, dim=1)
                for i, values, indices in zip(good, top.values.tolist(), top.indices.tolist(),
                                              strict=True):
                    rows[i].indices, rows[i].probs = indices, values
                    rows[i].labels = [names[j] for j in indices]
            results.extend(rows)
    return results


def calibration_images(model: VisionTransformer, inputs: Sequence[ImageInput],
                       limit: int = 512) -> torch.Tensor:
    """uint8 (N, C, H, W) images to calibrate int8 activations on: at most `limit` of
    `inputs`, spread evenly, prepared as `predict` prepares its inputs; unreadable ones are
    skipped (a ValueError when none can be read)."""
    items = [inputs[i] for i in spread_evenly(len(inputs), limit)]
    pixels, failures = [], []
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        prepared = pool.map(lambda item: _prepared_or_reason(model, item), items)
        for index, (item, result) in enumerate(zip(items, prepared, strict=True)):
            if isinstance(result, torch.Tensor):
                pixels.append(result)
            else:
                failures.append(f"{_name(item, index)}: {result}")
    if not pixels:
        raise ValueError(f"none of the {len(items)} calibration images could be read "
                         f"(first: {failures[0] if failures else 'no images given'})")
    return torch.stack(pixels)


def _prepared_or_reason(model: VisionTransformer | OnnxClassifier,
                        item: ImageInput) -> torch.Tensor | str:
    """`prepare_input`, or why it failed (an unreadable input is a reason, not a crash)."""
    try:
        return prepare_input(model, item)
    except ImageDecodeError as error:
        return error.reason
    except (ValueError, RuntimeError, MemoryError) as error:
        return f"could not preprocess: {error}"
