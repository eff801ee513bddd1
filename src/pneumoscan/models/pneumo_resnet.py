"""``pneumo-resnet``: the default, CPU-first network -- a narrow residual net for small grayscale input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pneumoscan.models.common import InputNormalization, XrayNetwork, sizes
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
    """Stem (3x3, stride ``stem_stride``), one residual stage per width (each after the first halving the
    resolution, or as ``strides`` says: 1 keeps it, so a last stage of stride 1 gives a finer last feature
    map for heat maps), global average pooling, dropout and a linear logit. About 1.2M parameters with
    the default widths."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 128,
        normalization: str = "zscore",
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: int = 1,
        dropout: float = 0.2,
        stem_stride: int = 2,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        del image_size  # fully convolutional: any input size works
        widths = sizes("widths", widths)
        (blocks,) = sizes("blocks", [blocks])
        (stem_stride,) = sizes("stem_stride", [stem_stride])
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.normalize = InputNormalization(normalization)
        self.stem = nn.Sequential(_conv_bn(in_channels, widths[0], stride=stem_stride), nn.ReLU())
        strides = list(strides) if strides is not None else [1] + [2] * (len(widths) - 1)
        if len(strides) != len(widths) or any(s not in (1, 2) for s in strides):
            raise TypeError(f"strides {strides}: give 1 or 2 for each of the {len(widths)} stages")
        stages: list[nn.Module] = []
        cin = widths[0]
        for width, stride in zip(widths, strides, strict=True):
            layers = [
                BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1) for j in range(blocks)
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
