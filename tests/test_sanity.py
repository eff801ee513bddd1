"""Input sanity warnings on decoded images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.sanity import check_radiograph, input_refusals


def chest_like(size: int = 256, seed: int = 0) -> np.ndarray:
    """A synthetic frontal chest film: bright body, two dark lungs, a spine, dark air outside, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.full((size, size), 0.05)
    image[((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1] = 0.75  # body
    for centre in (0.32, 0.68):
        image[((x - centre) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1] = 0.3  # lungs
    image[(np.abs(x - 0.5) < 0.04) & (y > 0.15)] = 0.9  # spine
    image += 0.1 * y + rng.normal(0, 0.04, image.shape)
    return np.clip(image, 0, 1)


def decoded(pixels: np.ndarray, colourfulness: float = 0.0) -> DecodedImage:
    return DecodedImage(pixels.astype(np.float32), colourfulness, "PNG", 8)


def test_chest_like_image_from_file_has_no_warnings_or_refusals(tmp_path: Path) -> None:
    path = tmp_path / "chest.png"
    Image.fromarray((chest_like() * 255).round().astype(np.uint8)).save(path)
    assert check_radiograph(read_image(path)) == []
    assert input_refusals(read_image(path)) == []


def test_colour_photo_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    path = tmp_path / "holiday.jpg"
    Image.fromarray(photo).save(path)
    (reason,) = input_refusals(read_image(path))
    assert "colour" in reason
    assert check_radiograph(read_image(path)) == []


def test_slightly_tinted_radiograph_is_not_refused() -> None:
    assert input_refusals(decoded(chest_like(), colourfulness=0.03)) == []


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((128, 128), 0.5),  # flat
        np.where(np.random.default_rng(2).random((128, 128)) < 0.97, 0.0, 1.0),  # nearly all one value
    ],
)
def test_blank_image_is_refused(pixels: np.ndarray) -> None:
    (reason,) = input_refusals(decoded(pixels))
    assert "almost blank" in reason


def test_thumbnail_warns() -> None:
    (warning,) = check_radiograph(decoded(chest_like(256)[::8, ::8]))  # 32 x 32
    assert "32x32" in warning and "thumbnail" in warning


def test_extreme_aspect_ratio_warns() -> None:
    (warning,) = check_radiograph(decoded(chest_like(300)[:100]))  # 300 wide, 100 high
    assert "3.0:1" in warning


def test_several_problems_give_several_warnings_and_refusals() -> None:
    image = decoded(np.zeros((10, 40)), colourfulness=0.5)
    assert len(check_radiograph(image)) == 2
    assert len(input_refusals(image)) == 2


def test_header_refusals_come_first() -> None:
    image = DecodedImage(chest_like(), 0.0, "DICOM", 12, ("DICOM Modality is CT",))
    assert input_refusals(image) == ["DICOM Modality is CT"]
