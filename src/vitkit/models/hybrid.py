"""The hybrid ViT of the paper's Section 3.1 ("Hybrid Architecture"): the patches of Eq. (1) are
cut from a CNN feature map instead of the raw image.

    "As an alternative to raw image patches, the input sequence can be formed from feature maps
    of a CNN. In this hybrid model, the patch embedding projection E (Eq. 1) is applied to
    patches extracted from a CNN feature map. As a special case, the patches can have spatial
    size 1x1, which means that the input sequence is obtained by simply flattening the spatial
    dimensions of the feature map and projecting to the Transformer dimension."

The CNN is the ResNet of the paper's Section 4.1 (as in BiT, Kolesnikov et al. 2020): batch
norm replaced by GroupNorm (32 groups) and convolutions that standardise their weights, here with
ResNet-v1.5 bottlenecks and TF "SAME" padding as in the released weights. R50+ViT-B/16 uses
option (ii) of Section 4.1: a ResNet-50 whose stage 4 is removed and its 3 blocks moved into
stage 3 (3, 4 and 9 blocks), so the 1024-channel feature map has stride 16 and a 224x224 image
gives 14x14 = 196 one-pixel patches, as many as ViT-B/16.

Everything after the patch embedding is `VisionTransformer` unchanged; module names follow
timm (`patch_embed.backbone.stem.conv`, `patch_embed.backbone.stages.0.blocks.0.conv1`, ...),
so timm's `vit_base_r50_s16_224` checkpoints load one to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import HybridConfig
from .vit import VisionTransformer

GROUPS = 32  # GroupNorm groups, BiT's choice
NORM_EPS = 1e-5  # GroupNorm's epsilon
WS_EPS = 1e-8  # the epsilon of weight standardisation in the hybrid's convolutions


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one side of length `size`: out = ceil(size / stride), the extra
    pixel (if the total is odd) going after, not before."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) so that a kernel x kernel window with this stride gives SAME output."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class StdConv2d(nn.Conv2d):
    """A convolution with weight standardisation (Qiao et al., 2019): each output filter's
    weights are shifted to mean 0 and scaled to variance 1 before use, W_hat = (W - mu) /
    sqrt(var + eps). Bias-free, with TF 'SAME' padding computed from the input size."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_chans, out_chans, kernel_size, stride=stride, bias=False)

    def standardised_weight(self) -> torch.Tensor:
        w = self.weight
        flat = w.reshape(w.shape[0], -1)  # one row per output filter
        mean = flat.mean(dim=1, keepdim=True)
        var = flat.var(dim=1, unbiased=False, keepdim=True)
        return ((flat - mean) / torch.sqrt(var + WS_EPS)).reshape_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardised_weight(), None, self.stride)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm over 32 groups, followed by a ReLU unless `act=False`."""

    def __init__(self, channels: int, act: bool = True) -> None:
        super().__init__(GROUPS, channels, eps=NORM_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu(x) if self.act else x


class Downsample(nn.Module):
    """The projection shortcut of a stage's first block: a strided 1x1 convolution and a norm."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv = StdConv2d(in_chans, out_chans, 1, stride)
        self.norm = GroupNormAct(out_chans, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """A ResNet-v1.5 bottleneck: 1x1 (reduce to a quarter), 3x3 (strided), 1x1 (expand), each
    followed by GroupNorm; ReLU after the first two and after the residual sum."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        mid = out_chans // 4
        needs_projection = stride != 1 or in_chans != out_chans
        self.downsample = Downsample(in_chans, out_chans, stride) if needs_projection else None
        self.conv1 = StdConv2d(in_chans, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2d(mid, out_chans, 1)
        self.norm3 = GroupNormAct(out_chans, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.norm1(self.conv1(x))
        y = self.norm2(self.conv2(y))
        y = self.norm3(self.conv3(y))
        return F.relu(y + shortcut)


class Stage(nn.Module):
    """`depth` bottlenecks; the first changes the width and (after stage 1) halves the size."""

    def __init__(self, in_chans: int, out_chans: int, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(
            Bottleneck(in_chans if i == 0 else out_chans, out_chans, stride if i == 0 else 1)
            for i in range(depth)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class MaxPoolSame(nn.Module):
    """3x3 max-pool of stride 2 with TF 'SAME' padding (padded with -inf, so never chosen)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=-math.inf), kernel_size=3, stride=2)


class BiTResNet(nn.Module):
    """The hybrid's CNN: stem (7x7/2 conv, GroupNorm + ReLU, 3x3/2 max-pool: stride 4), then one
    stage per entry of `layers`, of 4w, 8w, 16w, ... channels (w = `width`, 64 for ResNet-50),
    each after the first halving the resolution. Returns the last feature map (B, C, H/s, W/s).
    Also the body of the BiT-style CNN baseline (`resnet.BiTResNetClassifier`).
    """

    def __init__(self, layers: tuple[int, ...], width: int = 64, in_chans: int = 3,
                 small_input: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential()
        if small_input:  # for tiny images (the CNN baseline): a 3x3/1 conv and no pooling
            self.stem.add_module("conv", StdConv2d(in_chans, width, 3))
            self.stem.add_module("norm", GroupNormAct(width))
        else:
            self.stem.add_module("conv", StdConv2d(in_chans, width, 7, stride=2))
            self.stem.add_module("norm", GroupNormAct(width))
            self.stem.add_module("pool", MaxPoolSame())
        self.stages = nn.Sequential()
        chans = width
        for index, depth in enumerate(layers):
            out_chans = 4 * width * 2**index
            stride = 1 if index == 0 else 2
            self.stages.add_module(str(index), Stage(chans, out_chans, depth, stride))
            chans = out_chans
        self.num_features = chans

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images))


class HybridEmbedding(nn.Module):
    """Eq. (1) of the hybrid: x_p E on 1x1 patches of the CNN feature map.

    The ResNet maps (B, C, H, W) to (B, C', H/16, W/16); a 1x1 convolution is the linear map E
    applied to every feature-map pixel, which is then one token.
    """

    def __init__(self, config: HybridConfig) -> None:
        super().__init__()
        self.backbone = BiTResNet(config.resnet_layers, config.resnet_width, config.in_chans)
        self.proj = nn.Conv2d(self.backbone.num_features, config.embed_dim, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)  # (B, C', H/s, W/s)
        x = self.proj(features)  # (B, D, H/s, W/s): E on each 1x1 patch
        return x.flatten(2).transpose(1, 2)  # (B, N, D), row-major


class HybridVisionTransformer(VisionTransformer):
    """R50+ViT: `VisionTransformer` whose patch embedding is `HybridEmbedding`. The config's
    patch_size is the CNN's total stride (16 for R50), so the token grid is H/16 x W/16."""

    config: HybridConfig

    def make_patch_embedding(self, config: HybridConfig) -> nn.Module:  # type: ignore[override]
        return HybridEmbedding(config)
