"""``seed-cnn``: the original Keras notebook's CNN, layer for layer."""

from __future__ import annotations

import torch
from torch import nn

from pneumoscan.models.common import InputNormalization, XrayNetwork
from pneumoscan.models.registry import register


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.BatchNorm2d(cout), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


@register("seed-cnn")
class SeedCNN(XrayNetwork):
    """Conv(32)-BN-Pool, Conv(64)-Drop(.1)-BN-Pool, Conv(64)-BN-Pool, Conv(128)-Drop(.2)-BN-Pool,
    Conv(256)-Drop(.2)-BN-Pool, Flatten, Dense 256-Drop(.2)-128-Drop(.2)-1 (3x3 valid convolutions,
    about 2.1M parameters at 224x224x3)."""

    def __init__(self, in_channels: int = 3, image_size: int = 224, normalization: str = "none") -> None:
        super().__init__()
        self.normalize = InputNormalization(normalization)
        plan = [(in_channels, 32, 0.0), (32, 64, 0.1), (64, 64, 0.0), (64, 128, 0.2), (128, 256, 0.2)]
        self.features = nn.Sequential(*[_block(cin, cout, p) for cin, cout, p in plan])
        self.feature_channels = plan[-1][1]
        side = image_size
        for _ in plan:
            side = (side - 2) // 2
        if side < 1:
            raise ValueError(f"seed-cnn needs image_size >= 94, got {image_size}")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * side * side, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(128, 1),
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[-1][1]  # type: ignore[index]  # activation of the last convolution, before its pooling

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(1)
