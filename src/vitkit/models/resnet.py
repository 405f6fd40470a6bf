"""ResNet baselines (He et al., 2016) for comparing ViT with a CNN in the same trainer: the
paper's Section 4.4 argument is that a CNN's built-in locality and translation equivariance win
on small data, and ViT wins only after large-scale pre-training.

The networks are torchvision's, unchanged except for small images (<= 64 px, or
`small_input=True`): there the 7x7/2 stem convolution and 3x3/2 max-pool, which would shrink a
32x32 image to 8x8 before the first block, become one 3x3/1 convolution, as in the CIFAR
ResNets. `ResNet` carries what vitkit's trainer, evaluation and checkpoints need from a model:
a `config` with img_size, in_chans and num_classes, and a `meta`.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CIFAR_RESNET_BLOCKS, BiTResNetConfig, ResNetConfig
from .hybrid import BiTResNet
from .layers import zero_head
from .meta import ModelMeta, Preprocessing

# ImageNet's channel statistics, torchvision's normalisation for its ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_preprocessing(in_chans: int) -> Preprocessing:
    """ImageNet normalisation for RGB, [-1, 1] otherwise; bilinear resize, crop 0.875."""
    if in_chans == 3:
        return Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear",
                             crop_pct=0.875)
    return Preprocessing.default(in_chans)


class ResNet(nn.Module):
    """A torchvision ResNet (`config.arch`) with vitkit's `config` and `meta`; the network's own
    modules (conv1, bn1, layer1..4, fc) sit directly on this module, so the state dict uses
    torchvision's names."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        import torchvision

        self.config = config
        if config.arch in CIFAR_RESNET_BLOCKS:  # built for 32x32 images: no stem to adapt
            net = _cifar_resnet(CIFAR_RESNET_BLOCKS[config.arch], config.in_chans,
                                config.num_classes)
        else:
            net = getattr(torchvision.models, config.arch)(weights=None,
                                                           num_classes=config.num_classes)
            _adapt_stem(net, config)
        if config.drop_rate:
            net.fc = nn.Sequential(nn.Dropout(config.drop_rate), net.fc)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                     "avgpool", "fc"):
            self.add_module(name, getattr(net, name))
        if not config.num_classes:
            self.fc = nn.Identity()
        self.meta = ModelMeta(preprocessing=default_preprocessing(config.in_chans))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (B, C, H/s, W/s)."""
        if images.ndim != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(f"this model takes (B, {self.config.in_chans}, H, W) images, got a "
                             f"tensor of shape {tuple(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes): global average pool and the linear classifier."""
        return self.fc(torch.flatten(self.avgpool(self.forward_features(images)), 1))

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh zero-initialised classifier for num_classes (as the ViT's, for fine-tuning)."""
        last = self.layer4 if isinstance(self.layer4, nn.Sequential) else self.layer3
        width = last[-1].conv3.out_channels if hasattr(last[-1], "conv3") else (
            last[-1].conv2.out_channels)
        self.fc = zero_head(width, num_classes, self.conv1.weight.device, self.conv1.weight.dtype)
        self.config = self.config.replace(num_classes=num_classes)
        self.meta.class_names = None

    def no_weight_decay(self) -> set[str]:
        """Nothing beyond biases and norms (which the optimizer's groups already skip)."""
        return set()


def _adapt_stem(net: nn.Module, config: ResNetConfig) -> None:
    """Small images get a 3x3/1 stem without max-pool; other channel counts a new 7x7/2 conv."""
    if config.small_input:
        net.conv1 = nn.Conv2d(config.in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif config.in_chans != 3:
        net.conv1 = nn.Conv2d(config.in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)


def _cifar_resnet(blocks: int, in_chans: int, num_classes: int) -> nn.Module:
    """He et al.'s CIFAR ResNet with torchvision's BasicBlock: a 3x3 conv to 16 channels, stages
    of `blocks` blocks at 16, 32 and 64 channels (strides 1, 2, 2), no fourth stage (layer4 is
    the identity). Shortcuts that change shape are 1x1 convolutions (option B)."""
    from torchvision.models.resnet import BasicBlock

    def stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        shortcut = None
        if stride != 1 or inplanes != planes:
            shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes))
        return nn.Sequential(BasicBlock(inplanes, planes, stride, shortcut),
                             *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    net = nn.Module()
    net.conv1 = nn.Conv2d(in_chans, 16, kernel_size=3, stride=1, padding=1, bias=False)
    net.bn1, net.relu, net.maxpool = nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.Identity()
    net.layer1, net.layer2, net.layer3 = stage(16, 16, 1), stage(16, 32, 2), stage(32, 64, 2)
    net.layer4, net.avgpool = nn.Identity(), nn.AdaptiveAvgPool2d(1)
    net.fc = nn.Linear(64, num_classes or 1)
    for module in net.modules():  # torchvision's initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


class BiTResNetClassifier(nn.Module):
    """A BiT-style ResNet baseline: the hybrid's GroupNorm + weight-standardised ResNet
    (`hybrid.BiTResNet`, all four stages), global average pooling and a linear head. Without
    batch statistics it behaves the same at any batch size (BiT's reason for GroupNorm)."""

    def __init__(self, config: BiTResNetConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = BiTResNet(config.layers, 64, config.in_chans, config.small_input)
        self.head_drop = nn.Dropout(config.drop_rate)
        width = self.backbone.num_features
        self.head = nn.Linear(width, config.num_classes) if config.num_classes else nn.Identity()
        self.meta = ModelMeta(preprocessing=default_preprocessing(config.in_chans))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (B, 2048, H/s, W/s)."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.forward_features(images).mean(dim=(2, 3))))

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh zero-initialised head for num_classes."""
        width = self.backbone.num_features
        if num_classes:
            self.head = nn.Linear(width, num_classes, device=self.backbone.stem.conv.weight.device)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()
        self.config = self.config.replace(num_classes=num_classes)
        self.meta.class_names = None

    def no_weight_decay(self) -> set[str]:
        return set()
