"""The one preprocessing contract: how a file becomes model input.

Every path (training cache, evaluation, prediction, explanations, the web API and the ONNX engine)
goes through these functions, driven by the :class:`~pneumoscan.config.PreprocessConfig` stored
in the model file:

1. :func:`~pneumoscan.data.imageio.read_image` decodes JPEG/PNG/DICOM/... into grayscale floats in
   [0, 1] (DICOM windowing, MONOCHROME1 inversion, 16-bit scaling and EXIF orientation happen there).
   Model input is always read with ``min_side=`` :func:`source_side`, so a JPEG much larger than the
   network needs is decoded at 1/2, 1/4 or 1/8 scale -- the same way in training, prediction, the web
   API and heat maps, so all of them see the same pixels.
2. :func:`prepare` keeps the centre ``crop_fraction`` of the image, resizes it to
   ``image_size`` x ``image_size`` (no aspect-ratio padding, as the original notebook) and
   stores it as ``uint8`` -- the form kept in the on-disk cache.
3. :func:`to_model_input` scales ``uint8`` to float32 in [0, 1] and repeats the gray plane to
   ``channels``.  The optional ``normalization`` ("zscore") is the network's own first layer
   (:class:`pneumoscan.models.common.InputNormalization`), so that exported ONNX graphs carry it.

Where the model's input lies on a film -- the crop and resize of step 2 as a mapping of coordinates
-- is :func:`model_view`: radiologists' boxes are mapped into the model's input with it, and heat
maps are mapped back onto the film with it.

This module is torch-free so the ONNX engine can use it without PyTorch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pneumoscan.config import PreprocessConfig
from pneumoscan.data.imageio import DecodedImage, read_image, read_image_bytes
from pneumoscan.sanity import check_radiograph, input_refusals


@dataclass
class ModelInput:
    """One image ready for the model: the prepared ``uint8`` pixels, input warnings and refusal reasons."""

    pixels: np.ndarray
    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def model_input(image: DecodedImage, cfg: PreprocessConfig) -> ModelInput:
    """:func:`prepare` a decoded image and run the input checks of :mod:`pneumoscan.sanity` on it."""
    return ModelInput(prepare(image, cfg), check_radiograph(image), input_refusals(image))


def prepare(image: DecodedImage | np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Centre-crop and resize a decoded image to a ``(image_size, image_size)`` uint8 array."""
    pixels = image.pixels if isinstance(image, DecodedImage) else image
    pixels = _centre_crop(np.asarray(pixels, dtype=np.float32), cfg.crop_fraction)
    if pixels.shape != (cfg.image_size, cfg.image_size):
        resized = Image.fromarray(pixels).resize((cfg.image_size, cfg.image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32)
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def source_side(cfg: PreprocessConfig) -> int:
    """Shortest source side :func:`prepare` uses without upsampling: ``image_size / crop_fraction``."""
    return math.ceil(cfg.image_size / cfg.crop_fraction)


def read_for_model(
    path: str | os.PathLike[str], cfg: PreprocessConfig, *, accept_refused: bool = False
) -> DecodedImage:
    """Decode a file the way every model-input path does (``read_image`` with ``min_side=source_side``).

    ``accept_refused``: decode DICOM files whose header refuses them too (see ``read_image``).
    """
    return read_image(path, min_side=source_side(cfg), accept_refused=accept_refused)


def read_bytes_for_model(data: bytes, name: str, cfg: PreprocessConfig) -> DecodedImage:
    """:func:`read_for_model` of a file held in memory (e.g. retrieved from an archive)."""
    return read_image_bytes(data, name, min_side=source_side(cfg))


def load_prepared(path: str | os.PathLike[str], cfg: PreprocessConfig) -> np.ndarray:
    """Decode a file (:func:`read_for_model`) and :func:`prepare` it."""
    return prepare(read_for_model(path, cfg), cfg)


def to_model_input(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Turn ``(N, S, S)`` uint8 images into ``(N, channels, S, S)`` float32 in [0, 1]."""
    if batch.ndim == 2:
        batch = batch[None]
    scaled = batch.astype(np.float32)[:, None] / np.float32(255.0)
    return np.repeat(scaled, cfg.channels, axis=1) if cfg.channels > 1 else scaled


def crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centre crop that :func:`prepare` keeps."""
    if fraction >= 1.0:
        return 0, 0, height, width
    keep_h, keep_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    return (height - keep_h) // 2, (width - keep_w) // 2, keep_h, keep_w


@dataclass(frozen=True)
class ModelView:
    """The part of a film the model sees, in the film's own pixel coordinates, and its input side.

    Coordinates are continuous, pixel ``(row, col)`` covering ``[col, col + 1) x [row, row + 1)``; a
    film point ``(x, y)`` lands on model input ``((x - left) * scale_x, (y - top) * scale_y)``.
    """

    film_height: int
    film_width: int
    top: float
    left: float
    height: float
    width: float
    size: int

    @property
    def scale_x(self) -> float:
        """Model-input pixels per film pixel, across."""
        return self.size / self.width

    @property
    def scale_y(self) -> float:
        """Model-input pixels per film pixel, down."""
        return self.size / self.height

    def box_to_model(
        self, x: float, y: float, width: float, height: float
    ) -> tuple[float, float, float, float]:
        """A film box ``(x, y, width, height)`` as ``(x0, y0, x1, y1)`` in model input, clipped to it
        (an empty box, ``x0 == x1`` or ``y0 == y1``, where it lies outside the model's view)."""
        x0, x1 = ((value - self.left) * self.scale_x for value in (x, x + width))
        y0, y1 = ((value - self.top) * self.scale_y for value in (y, y + height))
        return tuple(min(max(value, 0.0), float(self.size)) for value in (x0, y0, x1, y1))  # type: ignore[return-value]

    def point_to_film(self, x: float, y: float) -> tuple[float, float]:
        """A model-input point ``(x, y)`` in the film's pixels."""
        return self.left + x / self.scale_x, self.top + y / self.scale_y


def model_view(
    film_shape: tuple[int, int], cfg: PreprocessConfig, decoded_shape: tuple[int, int] | None = None
) -> ModelView:
    """Where :func:`prepare` takes the model input from on a film of ``film_shape`` ``(height, width)``.

    ``decoded_shape``: the size the film was decoded at for the model when smaller (a JPEG decoded
    at a reduced scale by :func:`read_for_model`); its crop is mapped back to the film's pixels.
    """
    film_height, film_width = film_shape
    decoded_height, decoded_width = decoded_shape or film_shape
    top, left, keep_h, keep_w = crop_box(decoded_height, decoded_width, cfg.crop_fraction)
    down, across = film_height / decoded_height, film_width / decoded_width
    return ModelView(
        film_height, film_width, top * down, left * across, keep_h * down, keep_w * across, cfg.image_size
    )


def _centre_crop(pixels: np.ndarray, fraction: float) -> np.ndarray:
    height, width = pixels.shape
    top, left, keep_h, keep_w = crop_box(height, width, fraction)
    return pixels[top : top + keep_h, left : left + keep_w]
