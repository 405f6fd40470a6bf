"""`extract_features`: a model's frozen image representation for a whole dataset, the input of
the few-shot, linear-probe and k-NN evaluations: the pre-logits (what the classifier head
reads) of any family vitkit builds, or for a transformer the pooled tokens after a chosen
block. Computed once, in fp32, in batches, without gradients."""

from __future__ import annotations

import torch
from torch import nn

from ..data.dataset import ImageTensorDataset
from ..models import MaskedPatchPrediction, VisionTransformer, evaluating
from ..models.resnet import BiTResNetClassifier, ResNet
from .batches import model_device, model_inputs


def feature_network(model: nn.Module) -> nn.Module:
    """The network whose features are read: a masked-patch pre-training wrapper's ViT, else
    the model itself."""
    return model.vit if isinstance(model, MaskedPatchPrediction) else model


def check_layer(model: nn.Module, layer: int | None) -> None:
    """A clear error for a `layer` the model has not got (None, the pre-logits, always fits)."""
    if layer is None:
        return
    network = feature_network(model)
    if not isinstance(network, VisionTransformer):
        raise ValueError(f"layer={layer} picks a transformer block, but this is a "
                         f"{type(network).__name__}; leave layer=None for its pre-logits")
    depth = len(network.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"layer={layer} is outside this model's {depth} blocks; give 0 to "
                         f"{depth - 1}, or -1 for the last")


def pre_logits(model: nn.Module, inputs: torch.Tensor, layer: int | None = None) -> torch.Tensor:
    """The (B, D) representation of normalised `inputs`: what the classifier head reads, or
    with `layer` the pooled tokens (class token or mean patch token, as the model pools)
    after that block, before any final norm."""
    network = feature_network(model)
    if isinstance(network, VisionTransformer):
        if layer is None:
            return network.forward_head(network.forward_features(inputs), pre_logits=True)
        z = network.embed(inputs)
        for block in network.blocks[: layer % len(network.blocks) + 1]:
            z, _ = block(z)
        return network.pool(z)
    if isinstance(network, ResNet):
        return torch.flatten(network.avgpool(network.forward_features(inputs)), 1)
    if isinstance(network, BiTResNetClassifier):
        return network.forward_features(inputs).mean(dim=(2, 3))
    raise TypeError(f"no pre-logits known for a {type(network).__name__}; vitkit reads them "
                    "from its ViTs, hybrids and ResNets")


def extract_features(
    model: nn.Module,
    dataset: ImageTensorDataset,
    *,
    layer: int | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, D), labels int64 (N,)) on the CPU for every image of `dataset`,
    preprocessed as the model's own (`model_inputs`); `layer` as in `pre_logits`. The model's
    train/eval mode is restored after."""
    check_layer(model, layer)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if len(dataset) == 0:
        raise ValueError("cannot extract features from an empty dataset")
    device = torch.device(device) if device is not None else model_device(model)
    parts = []
    with evaluating(model):
        for start in range(0, len(dataset), batch_size):
            inputs = model_inputs(feature_network(model), dataset.images[start:start + batch_size],
                                  device)
            parts.append(pre_logits(model, inputs, layer).float().cpu())
    return torch.cat(parts), dataset.targets.clone().long()
