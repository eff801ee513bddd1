"""``seed-cnn``: the original Keras notebook's CNN, layer for layer."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import cast

import torch
from torch import nn

from pneumoscan.models.common import InputNormalization, XrayNetwork, sizes
from pneumoscan.models.registry import register

WIDTHS = (32, 64, 64, 128, 256)
DENSE = (256, 128)
DROPOUTS = (0.0, 0.1, 0.0, 0.2, 0.2)


def feature_side(image_size: int) -> int:
    """Side of the last feature map: five 3x3 valid convolutions, each followed by a 2x2 pooling."""
    side = image_size
    for _ in DROPOUTS:
        side = (side - 2) // 2
    return side


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.BatchNorm2d(cout), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def _fold_into_conv(conv: nn.Conv2d, a: torch.Tensor, b: torch.Tensor) -> None:
    """Make ``conv(x)`` compute ``conv(a * x + b)`` (per input channel; valid padding)."""
    weight = conv.weight.double()
    assert conv.bias is not None
    conv.bias.copy_(conv.bias.double() + (weight * b[None, :, None, None]).sum(dim=(1, 2, 3)))
    conv.weight.copy_(weight * a[None, :, None, None])


def _fold_into_linear(linear: nn.Linear, a: torch.Tensor, b: torch.Tensor) -> None:
    """Make ``linear(flatten(x))`` compute ``linear(flatten(a * x + b))`` for NCHW maps ``x``."""
    per_column = linear.in_features // a.numel()
    a, b = a.repeat_interleave(per_column), b.repeat_interleave(per_column)
    weight = linear.weight.double()
    linear.bias.copy_(linear.bias.double() + weight @ b)
    linear.weight.copy_(weight * a[None, :])


@register("seed-cnn")
class SeedCNN(XrayNetwork):
    """Conv(32)-BN-Pool, Conv(64)-Drop(.1)-BN-Pool, Conv(64)-BN-Pool, Conv(128)-Drop(.2)-BN-Pool,
    Conv(256)-Drop(.2)-BN-Pool, Flatten, Dense 256-Drop(.2)-128-Drop(.2)-1 (3x3 valid convolutions,
    about 2.1M parameters at 224x224x3).

    ``widths`` (five convolution widths) and ``dense`` (two hidden Dense sizes) default to the
    notebook's; other values describe the same layers at another size (e.g. an imported Keras file).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 224,
        normalization: str = "none",
        widths: Sequence[int] = WIDTHS,
        dense: Sequence[int] = DENSE,
    ) -> None:
        super().__init__()
        widths, dense = sizes("widths", widths, len(DROPOUTS)), sizes("dense", dense, 2)
        self.normalize = InputNormalization(normalization)
        inputs = [in_channels, *widths[:-1]]
        blocks = zip(inputs, widths, DROPOUTS, strict=True)
        self.features = nn.Sequential(*[_block(cin, cout, p) for cin, cout, p in blocks])
        self.feature_channels = widths[-1]
        side = feature_side(image_size)
        if side < 1:
            raise ValueError(f"seed-cnn needs image_size >= 94, got {image_size}")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, dense[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(dense[0], dense[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(dense[1], 1),
        )

    @property
    def cam_layers(self) -> list[nn.Module]:
        return [block[1] for block in self.features]  # type: ignore[index]  # each block's activation, before its pooling

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(1)

    @torch.no_grad()
    def inference_copy(self) -> SeedCNN:
        """A copy that computes the same eval-mode function with less work (for inference only).

        In eval mode a BatchNorm is a per-channel map ``a * x + b``; where every ``a > 0`` it
        commutes with max pooling, and so does ReLU. Each such block becomes conv → pool → ReLU
        (on a quarter of the pixels) and its ``a, b`` are folded into the next convolution (valid
        padding, so exactly) or the first Dense layer. The full-resolution maps then take a
        convolution and a pooling pass instead of four passes. Blocks with a scale ``a <= 0`` stay
        as they are, and so does the last block of a network with a gate, whose head reads its
        output. Grad-CAM must use the original (its ``cam_layers`` are before the pooling).
        """
        copy = deepcopy(self).eval()
        pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (a, b) not yet folded
        for i, block in enumerate(cast("list[nn.Sequential]", list(copy.features))):
            conv, norm = cast(nn.Conv2d, block[0]), cast(nn.BatchNorm2d, block[-2])
            if pending is not None:
                _fold_into_conv(conv, *pending)
            mean, var = norm.running_mean, norm.running_var
            assert mean is not None and var is not None  # seed-cnn's BatchNorms track statistics
            a = norm.weight.double() / torch.sqrt(var.double() + norm.eps)
            pending = None
            gate_reads_it = copy.gate is not None and i == len(copy.features) - 1  # the gate pools its output
            if bool((a > 0).all()) and not gate_reads_it:
                pending = (a, norm.bias.double() - a * mean.double())
                copy.features[i] = nn.Sequential(conv, block[-1], nn.ReLU(inplace=True))
        if pending is not None:
            _fold_into_linear(cast(nn.Linear, copy.head[1]), *pending)
        return copy
