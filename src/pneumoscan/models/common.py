"""Layers shared by the architectures, and the base class that splits a network into features and heads."""

from __future__ import annotations

import torch
from torch import nn


def sizes(name: str, values: object, count: int | None = None) -> list[int]:
    """``values`` as a list of positive layer sizes (``count`` of them, if given); ValueError otherwise."""
    if not isinstance(values, list | tuple) or not values or (count is not None and len(values) != count):
        raise ValueError(
            f"{name} must be a list of {count or 'one or more'} positive integers, got {values!r}"
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    return list(values)


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


class GateHead(nn.Module):
    """The "frontal chest film?" head: one logit per image from the pooled last feature map.

    Average and max pooling of the features feed a small MLP; a positive logit means "looks like the
    chest films the model was trained on". Trained jointly with the classifier against generated and
    real non-chest images (:mod:`pneumoscan.data.negatives`).
    """

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.mlp(pooled).squeeze(1)


class XrayNetwork(nn.Module):
    """Base class of the registered architectures (timm's ``forward_features`` / ``forward_head`` split).

    ``forward_features`` maps model input to the last convolutional feature map (``feature_channels``
    channels), ``forward_head`` maps it to one pneumonia logit per image, and the optional ``gate``
    (:class:`GateHead`, attached by :func:`~pneumoscan.models.registry.build_model`) maps the same
    features to one "chest film" logit.
    """

    feature_channels: int

    def __init__(self) -> None:
        super().__init__()
        self.gate: GateHead | None = None

    @property
    def cam_layers(self) -> list[nn.Module]:
        """The modules whose outputs are the feature stages heat maps are made from, first to last."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attach_gate(self) -> None:
        """Add a :class:`GateHead` on this network's features."""
        self.gate = GateHead(self.feature_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pneumonia logits and chest-film logits of one pass (the network must have a gate)."""
        if self.gate is None:
            raise RuntimeError("this network has no gate head")
        features = self.forward_features(x)
        return self.forward_head(features), self.gate(features)
