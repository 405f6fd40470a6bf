"""An exponential moving average of the model's weights (Polyak averaging), via PyTorch's
`AveragedModel`, so evaluation can use the smoother averaged weights."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of `model`: after each step, ema = decay * ema + (1 - decay) * weights.

    Buffers are averaged too (ViT has none that matter, but this keeps the copy complete).
    """
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
