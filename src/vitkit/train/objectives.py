"""What a training run minimises: classification of the labelled images (the default), or
masked patch prediction on unlabelled ones (the paper's self-supervised pre-training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import VisionTransformer
from .distill import Distillation


class Classification:
    """Cross-entropy of the logits against the (possibly mixed, soft) labels."""

    uses_labels = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(images).float(), labels, label_smoothing=self.label_smoothing)

    def weights(self, model: nn.Module) -> nn.Module:
        """What the run saves as its checkpoint: the model itself."""
        return model


class MaskedPatch:
    """Masked patch prediction (`vitkit.models.MaskedPatchPrediction`): cross-entropy of the
    predicted 3-bit mean colours of the corrupted patches; labels are not used."""

    uses_labels = False

    def loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, targets = net(images)
        return F.cross_entropy(logits.float(), targets)

    def weights(self, model: nn.Module) -> VisionTransformer:
        """What the run saves: the ViT alone, for `vitkit finetune --pretrained`."""
        return model.vit


Objective = Classification | MaskedPatch | Distillation
OBJECTIVES = ("classification", "masked-patch")

