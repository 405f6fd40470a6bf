"""`evaluate_frozen`: how good a model's frozen features are, the way the field measures a
representation: few-shot linear regression (the paper's), a linear probe and k-NN, all fitted
on the training split's features and scored on the test split's. Every argument is checked
before any feature is computed; the features are computed once for all three."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data.dataset import ImageTensorDataset
from .features import check_layer, extract_features
from .fewshot import DEFAULT_L2, DEFAULT_SHOTS, check_shots, few_shot_accuracy, seed_list
from .probes import knn_accuracy, linear_probe_accuracy


def check_frozen_options(model: nn.Module, *, few_shot: Sequence[int] | None = DEFAULT_SHOTS,
                         seeds: int | Sequence[int] = 3, l2: float = DEFAULT_L2,
                         linear_probe: bool = True, probe_c: float | None = None,
                         knn: int | None = 20, layer: int | None = None) -> None:
    """Clear errors, in `evaluate_frozen`'s argument names, for what no data can make right
    (callers check these before decoding any image)."""
    if not few_shot and not linear_probe and knn is None:
        raise ValueError("nothing to evaluate: give few_shot= shot counts, linear_probe=True "
                         "or knn=")
    if few_shot:
        if any(int(s) < 1 for s in few_shot):
            raise ValueError(f"shots={list(few_shot)} must be positive image counts per class")
        seed_list(seeds)
        if l2 < 0:
            raise ValueError(f"l2={l2} must not be negative")
    if probe_c is not None and probe_c <= 0:
        raise ValueError(f"probe_c={probe_c} must be positive (logistic regression's C)")
    if knn is not None and knn < 1:
        raise ValueError(f"knn={knn} must be at least 1")
    check_layer(model, layer)


def check_frozen_data(train_set: ImageTensorDataset, test_set: ImageTensorDataset,
                      few_shot: Sequence[int] | None, knn: int | None) -> None:
    """Clear errors for data the evaluations cannot use: other classes in the two sets, too
    few images of a class for the shots, fewer training images than neighbours."""
    if list(train_set.classes) != list(test_set.classes):
        raise ValueError(f"the training and test sets have different classes "
                         f"({train_set.classes[:5]}... vs {test_set.classes[:5]}...)")
    if len(train_set) == 0 or len(test_set) == 0:
        raise ValueError("frozen-feature evaluation needs training and test images")
    if few_shot:
        check_shots(train_set.targets, few_shot, train_set.num_classes)
    if knn is not None and knn > len(train_set):
        raise ValueError(f"knn={knn} is more than the {len(train_set)} training images")


def evaluate_frozen(
    model: nn.Module,
    train_set: ImageTensorDataset,
    test_set: ImageTensorDataset,
    *,
    few_shot: Sequence[int] | None = DEFAULT_SHOTS,
    seeds: int | Sequence[int] = 3,
    l2: float = DEFAULT_L2,
    linear_probe: bool = True,
    probe_c: float | None = None,
    knn: int | None = 20,
    layer: int | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Few-shot (`few_shot` shot counts, `seeds`, `l2`), linear-probe (`probe_c`, None: chosen
    on a validation carve) and `knn`-NN test top-1 of the model's pre-logits (or of block
    `layer`'s pooled tokens); None or False skips an evaluation. Returns {'features': {...},
    'few_shot': {...}, 'linear_probe': {...}, 'knn': {...}} with those asked for."""
    check_frozen_options(model, few_shot=few_shot, seeds=seeds, l2=l2, linear_probe=linear_probe,
                         probe_c=probe_c, knn=knn, layer=layer)
    check_frozen_data(train_set, test_set, few_shot, knn)
    started = time.perf_counter()
    options = dict(layer=layer, batch_size=batch_size, device=device)
    train_x, train_y = extract_features(model, train_set, **options)
    test_x, test_y = extract_features(model, test_set, **options)
    result: dict[str, Any] = {"features": {
        "dim": train_x.shape[1], "layer": "pre_logits" if layer is None else layer,
        "train_images": len(train_x), "test_images": len(test_x),
        "seconds": round(time.perf_counter() - started, 1)}}
    data = (train_x, train_y, test_x, test_y)
    if few_shot:
        result["few_shot"] = {"l2": l2, "seeds": seed_list(seeds), "shots": few_shot_accuracy(
            *data, shots=few_shot, seeds=seeds, l2=l2, num_classes=train_set.num_classes)}
    if linear_probe:
        result["linear_probe"] = linear_probe_accuracy(*data, c=probe_c)
    if knn is not None:
        result["knn"] = knn_accuracy(*data, k=knn)
    return result
