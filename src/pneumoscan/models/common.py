"""Layers shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn


class InputNormalization(nn.Module):
    """The network's first layer: the ``normalization`` of :class:`~pneumoscan.config.PreprocessConfig`.

    ``"zscore"`` scales each image to zero mean and unit standard deviation, which removes most of
    the exposure and contrast differences between sites; ``"none"`` passes [0, 1] input through.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("none", "zscore"):
            raise ValueError(f"unknown normalization {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + 1e-5)
