"""``pneumo-resnet``: the default, CPU-first network -- a narrow residual net for small grayscale input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pneumoscan.models.common import InputNormalization, XrayNetwork
from pneumoscan.models.registry import register


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (or a stride x stride patch convolution for strides above 2) and BatchNorm."""
    kernel, padding = (3, 1) if stride <= 2 else (stride, 0)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout)
        self.act = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


@register("pneumo-resnet")
class PneumoResNet(XrayNetwork):
    """Stem (3x3, stride ``stem_stride``), one residual stage per width (each halving the resolution), global
    average pooling, dropout and a linear logit. About 1.2M parameters with the default widths."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 128,
        normalization: str = "zscore",
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: int = 1,
        dropout: float = 0.2,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        del image_size  # fully convolutional: any input size works
        self.normalize = InputNormalization(normalization)
        self.stem = nn.Sequential(_conv_bn(in_channels, widths[0], stride=stem_stride), nn.ReLU())
        stages: list[nn.Module] = []
        cin = widths[0]
        for i, width in enumerate(widths):
            layers = [
                BasicBlock(cin if j == 0 else width, width, 1 if i == 0 and j == 0 else 2 if j == 0 else 1)
                for j in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.feature_channels = cin
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 1)
        )

    @property
    def cam_layers(self) -> list[nn.Module]:
        return list(self.stages)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(self.normalize(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(1)
