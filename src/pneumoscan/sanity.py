"""Input sanity: cheap checks of a decoded image before the model's own gate looks at it.

These are heuristics, not a classifier. They look only at colour, contrast and shape, so they cannot
tell a chest film from any other grayscale X-ray (a hand, a knee, a CT scout) or from a grayscale
photo: that is the model's gate's job (:mod:`pneumoscan.predict`). :func:`input_refusals` lists the
reasons to refuse an image outright (colour, blank, and the DICOM header's own reasons);
:func:`check_radiograph` lists warnings shown next to a prediction (thumbnail, odd shape).

The rules, on a :class:`~pneumoscan.data.imageio.DecodedImage` at its source resolution:

* Colour (refusal): a radiograph is gray, so a mean chroma (per-pixel max minus min of R, G, B, on a
  0-1 scale) above 0.08 suggests a colour photo or screenshot. Grayscale scans saved as RGB JPEG stay
  near 0.0; a tinted film photo may pass, a strongly sepia-toned scan may not.
* Blank (refusal): a pixel standard deviation below 0.02 (about 5 gray levels of 255), or more than 95 %
  of the pixels in one of 256 gray levels, means there is almost nothing to see. Chest films have dark borders
  but never that much.
* Thumbnail (warning): a shortest side below 64 pixels is too little detail for a diagnosis, even though the
  model upsamples it.
* Shape (warning): a side ratio above 2.5:1 is a strip, a panorama or a collage; chest films are about 1:1 to
  1.3:1 and are centre-cropped to a square before the model sees them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pneumoscan.data.imageio import DecodedImage

COLOURFULNESS_LIMIT = 0.08
BLANK_STD_LIMIT = 0.02
BLANK_DOMINANT_FRACTION = 0.95
MIN_SIDE = 64
MAX_ASPECT_RATIO = 2.5


def check_radiograph(image: DecodedImage) -> list[str]:
    """Human-readable warnings about ``image``; an empty list when nothing looks odd."""
    return _run(_WARNINGS, image)


def input_refusals(image: DecodedImage) -> list[str]:
    """Reasons to refuse ``image`` before the model sees it: colour, blank, and its DICOM header's reasons."""
    return [*image.refusals, *_run(_REFUSALS, image)]


def _run(checks: tuple[Callable[[DecodedImage], str | None], ...], image: DecodedImage) -> list[str]:
    found = (check(image) for check in checks)
    return [text for text in found if text is not None]


def _colour(image: DecodedImage) -> str | None:
    if image.colourfulness <= COLOURFULNESS_LIMIT:
        return None
    return (
        f"the image is in colour (mean chroma {image.colourfulness:.2f}, above {COLOURFULNESS_LIMIT}); "
        "it looks like a photo, not a radiograph"
    )


def _blank(image: DecodedImage) -> str | None:
    pixels = image.pixels
    spread = float(pixels.std())
    counts = np.bincount(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8).ravel(), minlength=256)
    dominant = float(counts.max()) / pixels.size
    if spread >= BLANK_STD_LIMIT and dominant <= BLANK_DOMINANT_FRACTION:
        return None
    return (
        f"the image is almost blank (pixel std {spread:.3f}, {dominant:.0%} of pixels in one gray level); "
        "check that the right file was exported"
    )


def _thumbnail(image: DecodedImage) -> str | None:
    height, width = image.pixels.shape
    if min(height, width) >= MIN_SIDE:
        return None
    return (
        f"the image is only {width}x{height} pixels (shortest side under {MIN_SIDE}); "
        "it looks like a thumbnail, pass the full-resolution image"
    )


def _aspect(image: DecodedImage) -> str | None:
    height, width = image.pixels.shape
    ratio = max(height, width) / max(1, min(height, width))
    if ratio <= MAX_ASPECT_RATIO:
        return None
    return (
        f"the image is {width}x{height} pixels, a {ratio:.1f}:1 side ratio (above {MAX_ASPECT_RATIO}:1); "
        "chest radiographs are close to square"
    )


_REFUSALS: tuple[Callable[[DecodedImage], str | None], ...] = (_colour, _blank)
_WARNINGS: tuple[Callable[[DecodedImage], str | None], ...] = (_thumbnail, _aspect)
