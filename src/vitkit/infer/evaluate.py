"""`evaluate`: top-1/top-5, per-class accuracy, loss and the confusion matrix of a model on a
labelled uint8 dataset, in batches: the one evaluation of `vitkit eval`, the trainer and
`vitkit train`'s final test."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..data.dataset import ImageTensorDataset
from ..models import VisionTransformer, evaluating
from .backends import select_runner
from .batches import model_device, model_inputs


def evaluate(
    model: VisionTransformer,
    dataset: ImageTensorDataset,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    backend: str = "eager",
    calibration: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Accuracy of `model` on `dataset` (uint8 images, preprocessed as the model's own), run
    on `backend`: 'eager', 'compiled', 'openvino' (OpenVINO's CPU plugin, same dtype), 'auto'
    (the fastest of those for this many images, never int8: the accuracy reported is the
    model's own), 'int8', calibrated on `calibration` uint8 images, 'onnx-int8' (ONNX
    Runtime) or 'fp8' (float8 linear layers, GPUs of compute capability 8.9+; see
    `vitkit.infer.backends`).

    Returns {'count', 'loss', 'top1', 'top5', 'topk' (the k of 'top5': min(5, classes)),
    'per_class' {name: accuracy or None}, 'class_counts', 'confusion' [true][predicted]}.
    Accuracies are fractions in [0, 1]. The model's train/eval mode is restored after.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    num_classes = model.config.num_classes
    if dataset.num_classes != num_classes:
        raise ValueError(
            f"the data has {dataset.num_classes} classes but the model predicts {num_classes}"
        )
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    top_k_hits = 0
    loss_sum = 0.0
    runner = select_runner(model, backend, dtype, device, min(batch_size, len(dataset)),
                           len(dataset), calibration if backend == "int8" else None)
    with evaluating(runner):
        for start in range(0, len(dataset), batch_size):
            images = dataset.images[start:start + batch_size]
            targets = dataset.targets[start:start + batch_size].to(device)
            inputs = model_inputs(model, images, device)
            logits = runner(inputs).float()
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
            top = logits.topk(k, dim=1).indices
            top_k_hits += (top == targets[:, None]).any(dim=1).sum().item()
            pairs = (targets * num_classes + top[:, 0]).cpu()
            confusion += torch.bincount(pairs, minlength=num_classes**2).view_as(confusion)
    count = len(dataset)
    class_counts = confusion.sum(dim=1)
    per_class = {
        name: (confusion[i, i].item() / class_counts[i].item() if class_counts[i] else None)
        for i, name in enumerate(dataset.classes)
    }
    return {
        "count": count,
        "loss": loss_sum / count,
        "top1": confusion.diag().sum().item() / count,
        "top5": top_k_hits / count,
        "topk": k,
        "per_class": per_class,
        "class_counts": dict(zip(dataset.classes, class_counts.tolist(), strict=True)),
        "confusion": confusion.tolist(),
        "classes": list(dataset.classes),
    }
