"""RoMa's feature pyramid: VGG19-BN for the fine scales, DINOv2 for the coarse one.

``encoder.cnn.layers`` is torchvision's ``vgg19_bn().features[:40]`` (same indices, so the
checkpoint's ``encoder.cnn.layers.{i}.*`` keys load as they are); built here so torchvision is not
needed. The activation just before each max-pool is a pyramid level: scales 1, 2, 4, 8 with 64, 128,
256, 512 channels. DINOv2's patch tokens are scale 16 (stride 14 in fact: RoMa calls it 16).
"""
from __future__ import annotations

import torch
from torch import nn

from .dinov2 import DINOv2

#: torchvision's VGG19 configuration "E", up to (and including) the fourth max-pool
_VGG19_UNTIL_POOL4 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")


class VGG19BN(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19_UNTIL_POOL4:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats, scale = {}, 1
        for layer in self.layers:
            if isinstance(layer, nn.MaxPool2d):
                feats[scale] = x
                scale *= 2
            x = layer(x)
        return feats


class Encoder(nn.Module):
    """``cnn`` is in the RoMa checkpoint; DINOv2 is a separate published file and lives beside
    the encoder (the authors keep it out of the state dict the same way)."""

    def __init__(self):
        super().__init__()
        self.cnn = VGG19BN()

    def forward(self, x: torch.Tensor, dinov2: DINOv2 | None) -> dict[int, torch.Tensor]:
        """Images (B, 3, H, W) -> {1, 2, 4, 8: VGG features; 16: DINOv2 tokens when ``dinov2``}."""
        pyramid = self.cnn(x)
        if dinov2 is not None:
            pyramid[16] = dinov2(x)
        return pyramid
