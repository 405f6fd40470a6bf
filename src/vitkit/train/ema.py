"""An exponential moving average of the model's weights (Polyak averaging): after each step,
ema = decay * ema + (1 - decay) * weights, one fused `lerp` over all tensors and no host
synchronisation, so evaluation can use the smoother averaged weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA(nn.Module):
    """A frozen copy of `model` (in `.module`) that follows it by exponential averaging."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Move every averaged tensor a (1 - decay) step towards the model's."""
        mine = [t for t in self._tensors(self.module)]
        theirs = [t.detach() for t in self._tensors(model)]
        torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        """Parameters, then floating-point buffers, in a fixed order."""
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        return [*model.parameters(), *buffers]

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also takes the state of torch's AveragedModel (its `n_averaged` count is dropped)."""
        state_dict = {k: v for k, v in state_dict.items() if k != "n_averaged"}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def make_ema(model: nn.Module, decay: float) -> ModelEMA:
    """An EMA copy of `model` with this decay."""
    return ModelEMA(model, decay)
