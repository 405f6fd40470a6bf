"""Masked patch prediction, the paper's self-supervised objective (Section 4.6, Appendix
B.1.2): corrupt half of the patch embeddings (80% of those replaced by a learned [mask]
embedding, 10% by another random patch's embedding, 10% left as they are) and predict, from
each corrupted patch's output token, its mean colour in 3 bits per channel (512 classes for
RGB). The ViT inside is an ordinary `VisionTransformer`, saved alone after pre-training."""

from __future__ import annotations

import torch
from torch import nn

from .config import ViTConfig
from .meta import ModelMeta
from .vit import VisionTransformer


class MaskedPatchPrediction(nn.Module):
    """A ViT plus the [mask] embedding and the colour head of masked patch prediction.

    `forward(images)` takes normalised images and returns (logits, targets) for the
    corrupted patches: (M, 2^(bits * channels)) and (M,).
    """

    def __init__(self, vit: VisionTransformer, corrupt: float = 0.5, bits: int = 3) -> None:
        super().__init__()
        self.vit = vit
        self.corrupt = corrupt
        self.bits = bits
        dim = vit.config.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.colour_head = nn.Linear(dim, 2 ** (bits * vit.config.in_chans))

    @property
    def config(self) -> ViTConfig:
        return self.vit.config

    @property
    def meta(self) -> ModelMeta:
        return self.vit.meta

    @meta.setter
    def meta(self, value: ModelMeta) -> None:
        self.vit.meta = value

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {f"vit.{name}" for name in self.vit.no_weight_decay()} | {"mask_token"}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vit = self.vit
        grid = vit.check_input(images)
        patches = vit.patch_embed(images)  # x_p E, (B, N, D)
        count, tokens, dim = patches.shape
        chosen = self._corrupted(count, tokens, images.device)  # (B, N) bool
        roll = torch.rand(count, tokens, device=images.device)
        to_mask = chosen & (roll < 0.8)
        to_other = chosen & (roll >= 0.8) & (roll < 0.9)
        others = patches.reshape(-1, dim)[torch.randint(count * tokens, (count, tokens),
                                                        device=images.device)]
        patches = torch.where(to_other[..., None], others, patches)
        patches = torch.where(to_mask[..., None], self.mask_token.to(patches.dtype), patches)
        z = vit.norm(vit.encode(vit.add_class_and_position(patches, grid)))
        out = z[:, vit.config.num_prefix_tokens:]  # the patch tokens
        return self.colour_head(out[chosen]), self.targets(images)[chosen]

    def _corrupted(self, count: int, tokens: int, device: torch.device) -> torch.Tensor:
        """Exactly round(corrupt * N) random patches of each image."""
        keep = round(self.corrupt * tokens)
        ranks = torch.rand(count, tokens, device=device).argsort(dim=1).argsort(dim=1)
        return ranks < keep

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """Each patch's mean colour, each channel cut into 2^bits levels, as one class index:
        (B, N). The pixels are un-normalised with the model's mean and std first."""
        prep, patch = self.vit.meta.preprocessing, self.vit.config.patch_size
        shape = (1, -1, 1, 1)
        mean = torch.tensor(prep.mean, device=images.device).view(shape)
        std = torch.tensor(prep.std, device=images.device).view(shape)
        pixels = (images.float() * std + mean).clamp(0, 1)
        colours = nn.functional.avg_pool2d(pixels, patch)  # (B, C, gh, gw)
        levels = (colours * 2**self.bits).floor().clamp(max=2**self.bits - 1).long()
        index = torch.zeros_like(levels[:, 0])
        for channel in range(levels.shape[1]):
            index = index * 2**self.bits + levels[:, channel]
        return index.flatten(1)
