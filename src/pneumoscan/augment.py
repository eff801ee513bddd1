"""Random batch augmentation on tensors with kornia, built from :class:`~pneumoscan.config.AugmentConfig`.

Input and output are float batches ``(N, C, H, W)`` in [0, 1] (before the network's own
normalisation).  Geometry follows the notebook's Keras ``ImageDataGenerator`` (rotation, shear,
zoom, shifts, horizontal flip, edge pixels repeated).  ``framing`` imitates films framed differently
by another site: training images are cached with a wider view than the model's centre crop
(:func:`training_view`) and a random-resized crop picks a field of view up to ``framing`` larger or
smaller, of a random aspect ratio and position, at the model's input size.  The intensity
transforms (brightness, contrast, gamma, blur, noise, erasing) imitate differences between X-ray
sites and are off in the ``seed`` recipe.  Every transform whose setting is 0 (or False) is left out.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
from torch import nn

from pneumoscan.config import AugmentConfig, PreprocessConfig


def training_view(preprocess: PreprocessConfig, cfg: AugmentConfig) -> PreprocessConfig:
    """How training images are cached: with ``framing``, a centre crop up to ``framing`` wider than
    the model's (at most the whole film), at the same pixels per unit of film; else ``preprocess``."""
    if not (cfg.enabled and cfg.framing):
        return preprocess
    crop = min(1.0, preprocess.crop_fraction * (1 + cfg.framing))
    size = round(preprocess.image_size * crop / preprocess.crop_fraction)
    return preprocess.model_copy(update={"crop_fraction": crop, "image_size": size})


def build_augmentation(cfg: AugmentConfig, preprocess: PreprocessConfig) -> nn.Module:
    """Return a module that augments a batch of :func:`training_view` images to the model's input size.

    Identity when augmentation is disabled.
    """
    if not cfg.enabled:
        return nn.Identity()
    steps: list[nn.Module] = []
    if cfg.framing:
        side = preprocess.image_size
        base = side / training_view(preprocess, cfg).image_size  # the model's view, share of the cached side
        low, high = base * (1 - cfg.framing), min(1.0, base * (1 + cfg.framing))
        steps.append(
            K.RandomResizedCrop(
                (side, side), scale=(low**2, high**2), ratio=(1 - cfg.framing, 1 / (1 - cfg.framing))
            )
        )
    if cfg.rotation or cfg.shear or cfg.zoom or cfg.shift:
        steps.append(
            K.RandomAffine(
                degrees=cfg.rotation,
                translate=(cfg.shift, cfg.shift) if cfg.shift else None,
                scale=(1 - cfg.zoom, 1 + cfg.zoom) if cfg.zoom else None,
                shear=math.degrees(math.atan(cfg.shear)) if cfg.shear else None,
                padding_mode="border",
                p=1.0,
            )
        )
    if cfg.hflip:
        steps.append(K.RandomHorizontalFlip())
    if cfg.brightness:
        steps.append(K.RandomBrightness((1 - cfg.brightness, 1 + cfg.brightness), p=0.8))
    if cfg.contrast:
        steps.append(K.RandomContrast((1 - cfg.contrast, 1 + cfg.contrast), p=0.8))
    if cfg.gamma:
        steps.append(K.RandomGamma((1 - cfg.gamma, 1 + 2 * cfg.gamma), p=0.8))
    if cfg.blur:
        steps.append(K.RandomGaussianBlur((5, 5), (0.1, 1.5), p=cfg.blur))
    if cfg.noise:
        steps.append(K.RandomGaussianNoise(std=cfg.noise, p=0.5))
    if cfg.erasing:
        steps.append(K.RandomErasing(scale=(0.02, 0.15), p=cfg.erasing))
    return K.AugmentationSequential(*steps) if steps else nn.Identity()  # type: ignore[arg-type]
