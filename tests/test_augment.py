"""Batch augmentation: recipes build, keep the model's input size, and framing works through training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from torch import nn

from pneumoscan.augment import build_augmentation, training_view
from pneumoscan.config import AugmentConfig, PreprocessConfig, recipe
from pneumoscan.data.datamodule import XrayDataModule


def test_disabled_augmentation_is_identity() -> None:
    assert isinstance(build_augmentation(AugmentConfig(enabled=False), PreprocessConfig()), nn.Identity)


@pytest.mark.parametrize("name", ["seed", "default"])
def test_recipe_augmentation_changes_pixels_and_keeps_shape(name: str) -> None:
    config = recipe(name)
    side, channels = config.preprocess.image_size, config.preprocess.channels
    cached = training_view(config.preprocess, config.augment).image_size
    batch = torch.rand(4, channels, cached, cached)
    out = build_augmentation(config.augment, config.preprocess)(batch)
    assert out.shape == (4, channels, side, side)
    if cached == side:
        assert not torch.allclose(out, batch)


@pytest.mark.parametrize(
    ("crop", "framing", "expected_crop", "expected_size"),
    [(0.8, 0.2, 0.96, 154), (0.8, 0.5, 1.0, 160), (1.0, 0.2, 1.0, 128), (0.8, 0.0, 0.8, 128)],
)
def test_training_view_is_wider_at_the_same_pixel_scale(
    crop: float, framing: float, expected_crop: float, expected_size: int
) -> None:
    preprocess = PreprocessConfig(image_size=128, crop_fraction=crop)
    view = training_view(preprocess, AugmentConfig(framing=framing))
    assert view.crop_fraction == pytest.approx(expected_crop)
    assert view.image_size == expected_size
    assert view.image_size / view.crop_fraction == pytest.approx(128 / crop, rel=0.01)
    assert training_view(preprocess, AugmentConfig(enabled=False, framing=framing)) == preprocess


def test_framing_crops_vary_in_scale_and_end_at_the_model_size() -> None:
    preprocess = PreprocessConfig(image_size=32, channels=1, crop_fraction=0.8)
    cfg = AugmentConfig(rotation=0, shear=0, zoom=0, shift=0, hflip=False, framing=0.3)
    side = training_view(preprocess, cfg).image_size
    # a film whose columns count up: the width of the field of view shows in the range of values
    film = torch.linspace(0, 1, side).expand(64, 1, side, side).contiguous()
    out = build_augmentation(cfg, preprocess)(film)
    assert out.shape == (64, 1, 32, 32)
    spans = out[:, 0, 16, -1] - out[:, 0, 16, 0]
    assert spans.max() - spans.min() > 0.2  # fields of view of clearly different widths
    assert spans.max() <= 1.0 + 1e-6


def test_framing_caches_training_wider_and_trains(synthetic_data: Path, tmp_path: Path) -> None:
    from pneumoscan.training.fit import train

    config = tiny_config().with_overrides(
        ["preprocess.crop_fraction=0.8", "augment.framing=0.2", "train.max_epochs=1"]
    )
    data = XrayDataModule(synthetic_data / "train", config, progress=False)
    assert data.dataset("train").pixels.shape[1:] == (77, 77)  # 64 / 0.8 * 0.96
    assert data.dataset("val").pixels.shape[1:] == (64, 64)
    result = train(synthetic_data / "train", tmp_path / "run", config, progress=False)
    assert result.model_path is not None and result.model_path.exists()


def test_pneumo_resnet_strides_set_the_last_feature_map() -> None:
    import torch

    from pneumoscan.models.pneumo_resnet import PneumoResNet

    options = {"widths": [8, 16, 32, 64], "stem_stride": 4}
    coarse = PneumoResNet(1, 128, "zscore", **options)  # type: ignore[arg-type]
    fine = PneumoResNet(1, 128, "zscore", strides=[1, 2, 2, 1], **options)  # type: ignore[arg-type]
    x = torch.zeros(1, 1, 128, 128)
    assert coarse.forward_features(x).shape[-1] == 4 and fine.forward_features(x).shape[-1] == 8
    assert coarse.state_dict().keys() == fine.state_dict().keys()  # same weights, other resolution
    with pytest.raises(TypeError, match="strides"):
        PneumoResNet(1, 128, "zscore", strides=[1, 2], **options)  # type: ignore[arg-type]
