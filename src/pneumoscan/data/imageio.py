"""Decode radiograph files (JPEG, PNG, BMP, TIFF, DICOM) into 2-D float32 grayscale arrays in [0, 1].

The format is found from the content, never from the file name: DICOM by the ``DICM`` marker at byte 128
(or, for files without that preamble, by pydicom parsing an image dataset out of them), anything else by
Pillow. Output always looks the way a reader sees a radiograph: bright = dense, bones white.

Pillow images: a JPEG larger than the caller needs (``min_side``) is decoded at a reduced scale (1/2, 1/4
or 1/8: libjpeg's DCT scaling through Pillow's draft mode), which keeps both sides at least ``min_side``
long and makes large films several times faster to read. The EXIF orientation is applied; colour is
reduced to ITU-R 601 luma; transparent pixels are composited over black (air is black on a
radiograph, so see-through areas carry no density); 16-bit images are scaled by 65535, keeping their
full precision. Multi-page TIFF/GIF files give their first page.

DICOM images: the modality LUT (rescale slope/intercept) is applied, then the VOI LUT or window
centre/width when the file has one; otherwise 8-bit data is scaled by its nominal range and deeper
data by its own minimum and maximum. MONOCHROME1, and a Presentation LUT Shape of INVERSE, are
inverted to look like MONOCHROME2. Multi-frame files, files without pixel data and compressed transfer
syntaxes with no installed decoder are refused; JPEG Lossless, JPEG 2000 and RLE decode through the
pylibjpeg plugins of the ``pneumoscan[dicom]`` extra. A compressed frame is measured from
its own codestream header (not only the DICOM header) before it is decoded. A Deflated Explicit VR
Little Endian data set is measured while it is inflated, in small pieces and without keeping them, and
refused when it would inflate beyond :func:`max_dataset_bytes` (a few hundred bytes of deflate can
claim a gigabyte); only then does pydicom inflate it.

Files: only regular files up to :data:`MAX_FILE_BYTES` are read (never a FIFO or a device). JPEGs whose
entropy-coded data is cut short (even when an end-of-image marker was appended, which libjpeg would
silently pad with grey) are refused: libjpeg-turbo's warnings, which Pillow does not report, are read
through ``simplejpeg`` at 1/8 scale.

Every failure raises :class:`~pneumoscan.errors.ImageReadError` (or its subclasses
:class:`~pneumoscan.errors.ImageTooLargeError` and :class:`~pneumoscan.errors.UnsupportedImageError`)
with a one-line message that names the file and says what to do.
"""

from __future__ import annotations

import io
import os
import struct
import unicodedata
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from pneumoscan.errors import (
    ImageReadError,
    ImageTooLargeError,
    InputRefusedError,
    UnsupportedImageError,
    warn,
)
from pneumoscan.files import FileTooLargeError, NotRegularFileError, read_regular_file

FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpeg", ".jpg"),
    "PNG": (".png",),
    "DICOM": (".dcm", ".dicom"),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
}
"""The supported formats and the file name suffixes a folder scan picks up for each: the one list."""
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(suffix for suffixes in FORMATS.values() for suffix in suffixes)
MAX_PIXELS: int = 50_000_000
MAX_FILE_BYTES: int = 512 * 2**20
"""Largest image file read (a 50-megapixel 16-bit DICOM is 100 MB)."""
MAX_BYTES_PER_PIXEL: int = 6
"""Widest pixel data decoded: 16-bit RGB."""
DICOM_HEADER_ALLOWANCE: int = 16 * 2**20
"""Room for the non-pixel part of an inflated DICOM data set (real headers take kilobytes)."""

_HINT = "pass a JPEG, PNG or DICOM file"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})  # pydicom hands these back as RGB
_MAX_DETAIL = 160  # characters of a library's own error message quoted in ours
# libjpeg warnings that mean image data is missing or garbled (libjpeg pads such images with grey)
_JPEG_DAMAGE = ("premature end of data segment", "bad huffman code", "instead of rst")
_J2K_START = b"\xff\x4f\xff\x51"  # JPEG 2000 codestream: SOC, then the SIZ marker with the size
_SNIFF_BYTES = 2**20  # bytes a folder scan reads of a file without a known suffix to tell DICOM
_INFLATE_PIECE = 2**20  # bytes inflated at a time while a deflated DICOM data set is measured
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}  # JPEG SOFn and JPEG-LS SOF55


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image at its source resolution.

    ``pixels`` is 2-D float32 grayscale in [0, 1] with bright = dense (bones white). ``colourfulness``
    is the mean chroma of the source in [0, 1]: 0.0 for grayscale sources and for colour sources whose
    channels are equal, high for colour photos. ``bit_depth`` is 1, 8 or 16 for ordinary images (32 for
    float/32-bit TIFF) and BitsStored for DICOM.
    """

    pixels: np.ndarray
    colourfulness: float
    source_format: str
    bit_depth: int
    refusals: tuple[str, ...] = ()


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a folder scan should pick up ``path``: not a hidden file, and a supported suffix or DICOM.

    Hidden files are skipped because archives made on macOS carry ``._name.jpeg`` resource forks.
    Files with any other name are looked into: PACS exports and DICOMDIR media name their films
    ``IM000001`` or after their UID (``1.2.840....3``), so a DICOM image is found by its content,
    with or without the 128-byte preamble, as :func:`read_image` tells it.
    """
    name = Path(path).name
    if name.startswith("."):
        return False
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES or _is_dicom_image_file(path)


def _is_dicom_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether the start of ``path`` is a DICOM file (as :func:`read_image` tells) but no DICOMDIR index.

    Only the first :data:`_SNIFF_BYTES` are read: the file meta information of a file with the
    preamble, the header of one without it.
    """
    try:
        head = read_regular_file(path, _SNIFF_BYTES, head_only=True)
        if _has_preamble(head):
            meta = _file_meta(head)[0]
        else:
            dataset = _read_headerless_dicom(head, os.fspath(path), MAX_PIXELS, stop_before_pixels=True)
            if dataset is None:
                return False
            meta = dataset.file_meta
    except Exception:  # not DICOM, unreadable or damaged: not picked up by a folder scan
        return False
    return meta.get("MediaStorageSOPClassUID") != MediaStorageDirectoryStorage


def find_image_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """The files under ``folder`` (recursively, in no particular order) that :func:`is_image_file` accepts.

    The one folder walk of pneumoscan (data folders, ``predict DIR``, int8 calibration). Symbolic links
    to files and folders are followed, each folder once (so link cycles end); a folder that cannot be
    listed is skipped with a :class:`~pneumoscan.errors.PneumoscanWarning` naming it.
    """
    seen: set[tuple[int, int]] = set()
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        try:
            status = current.stat()
            if (status.st_dev, status.st_ino) in seen:
                continue
            seen.add((status.st_dev, status.st_ino))
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError as exc:
            warn(f"{current}: folder cannot be read ({exc.strerror or exc}); its images are skipped")
            continue
        for entry in entries:
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif entry.is_file() and is_image_file(entry.path):
                yield Path(entry.path)


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
    accept_refused: bool = False,
) -> DecodedImage:
    """Decode the image file at ``path``; raise ImageReadError (naming the file) if it cannot be used.

    ``min_side``: the shortest side the caller needs; larger JPEGs may then be decoded at a reduced
    scale that keeps both sides at least that long (``None``: always full resolution).
    A DICOM file whose header says it is no frontal chest radiograph (:func:`dicom_refusals`) raises
    :class:`~pneumoscan.errors.InputRefusedError` before any pixel is decoded; with
    ``accept_refused`` it is decoded and the reasons are kept in ``DecodedImage.refusals``.
    """
    name = os.fspath(path)
    return read_image_bytes(
        _read_file(name), name, max_pixels=max_pixels, min_side=min_side, accept_refused=accept_refused
    )


def read_image_bytes(
    data: bytes,
    name: str,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
    accept_refused: bool = False,
) -> DecodedImage:
    """Decode an image held in memory (e.g. a web upload); ``name`` is only used in error messages."""
    if not data:
        raise _error(name, f"file is empty; {_HINT}")
    image = None if _has_preamble(data) else _open_with_pillow(data, name)
    if image is not None:
        return _decode_pillow(image, data, name, max_pixels, min_side)
    dataset = _dicom_dataset(data, name, max_pixels)
    if dataset is None:
        raise _error(
            name, f"not a readable image (cannot identify image file); {_HINT}", UnsupportedImageError
        )
    return _decode_dicom(dataset, name, max_pixels, accept_refused)


def decoded_size(
    data: bytes, *, min_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> tuple[int, int]:
    """``(width, height)`` that :func:`read_image_bytes` would decode ``data`` to, read from headers only.

    Cheap (no pixel data is decoded), for budgets over several images; ``(0, 0)`` when ``data`` is
    not an image that can be measured this way (decoding it with ``max_pixels`` then reports why).
    """
    try:
        if not _has_preamble(data):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
            if min_side is not None and image.format == "JPEG":
                image.draft(image.mode, (min_side, min_side))
            return image.size
    except UnidentifiedImageError:
        pass  # perhaps DICOM without the preamble
    except Exception:  # unreadable headers are reported when the image is decoded
        return 0, 0
    try:
        dataset = _dicom_dataset(data, "", max_pixels, stop_before_pixels=True)
        return (0, 0) if dataset is None else (int(dataset.Columns), int(dataset.Rows))
    except Exception:
        return 0, 0


def max_dataset_bytes(max_pixels: int = MAX_PIXELS) -> int:
    """The most bytes a deflated DICOM data set may inflate to for images of up to ``max_pixels``."""
    return max_pixels * MAX_BYTES_PER_PIXEL + DICOM_HEADER_ALLOWANCE


def _error(name: str, text: str, kind: type[ImageReadError] = ImageReadError) -> ImageReadError:
    return kind(" ".join(f"{name}: {text}".splitlines()))


def _detail(exc: BaseException) -> str:
    """A library's error message squeezed onto one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _read_file(name: str) -> bytes:
    try:
        return read_regular_file(name, MAX_FILE_BYTES)
    except FileNotFoundError as exc:
        raise _error(name, "file not found") from exc
    except IsADirectoryError as exc:
        raise _error(name, f"is a folder, not an image file; {_HINT}", UnsupportedImageError) from exc
    except NotRegularFileError as exc:
        raise _error(
            name, f"is not a regular file (a pipe or device); {_HINT}", UnsupportedImageError
        ) from exc
    except FileTooLargeError as exc:
        raise _error(
            name,
            f"file is {exc.size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit for an image",
            ImageTooLargeError,
        ) from exc
    except PermissionError as exc:
        raise _error(name, "permission denied; check that the file is readable") from exc
    except OSError as exc:
        raise _error(name, f"cannot be read ({exc.strerror or _detail(exc)})") from exc


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise _error(name, f"image is {width}x{height} pixels, which is empty; re-export it")
    if width * height > max_pixels:
        raise _error(
            name,
            f"image is {width}x{height} pixels, above the {max_pixels}-pixel limit; downscale it first",
            ImageTooLargeError,
        )


# --- Pillow -----------------------------------------------------------------------------------------


def _open_with_pillow(data: bytes, name: str) -> Image.Image | None:
    """Open (without decoding pixels) an image Pillow recognises, or return None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _error(
            name, f"image is too large to decode safely ({_detail(exc)}); downscale it", ImageTooLargeError
        ) from exc
    except Exception as exc:  # plugins choke on damaged headers with anything from OSError to struct.error
        raise _error(name, f"image is truncated or corrupt ({_detail(exc)}); re-export it") from exc


def _decode_pillow(
    image: Image.Image, data: bytes, name: str, max_pixels: int, min_side: int | None
) -> DecodedImage:
    _check_size(name, image.width, image.height, max_pixels)
    source_format = image.format or "unknown"
    if min_side is not None and source_format == "JPEG":
        image.draft(image.mode, (min_side, min_side))  # keeps the mode; a no-op when no scale fits
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()  # truncated files fail here rather than being padded with grey
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, ...
        raise _error(name, f"image is truncated or corrupt ({_detail(exc)}); re-export it") from exc
    if source_format in ("JPEG", "MPO"):
        _check_jpeg_data(data, name)
    pixels, colourfulness, bit_depth = _pillow_to_gray(image)
    return DecodedImage(_finish(pixels), colourfulness, source_format, bit_depth)


def _check_jpeg_data(data: bytes, name: str) -> None:
    """Refuse a JPEG whose scan data is cut short or garbled, which Pillow pads with grey unreported.

    libjpeg-turbo reports it as a warning; ``simplejpeg`` (strict) raises it.  Decoding at 1/8 scale
    still reads every coefficient, so this costs a fraction of the real decode.  Other warnings
    (extraneous bytes, a missing final marker after complete data) are harmless and ignored.
    """
    try:
        colourspace = simplejpeg.decode_jpeg_header(data)[2]
        target = "CMYK" if colourspace in ("CMYK", "YCCK") else "GRAY"
        simplejpeg.decode_jpeg(data, colorspace=target, min_factor=8, strict=True)
    except (ValueError, RuntimeError) as exc:
        if any(damage in str(exc).lower() for damage in _JPEG_DAMAGE):
            raise _error(
                name, f"image is truncated or corrupt ({_detail(exc)}); re-export or copy it again"
            ) from exc


def _pillow_to_gray(image: Image.Image) -> tuple[np.ndarray, float, int]:
    """Grayscale in [0, 1] (before clipping), colourfulness and bit depth of a loaded Pillow image."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 16
    if mode in ("I", "F"):
        pixels, bit_depth = _wide_to_unit(np.asarray(image, dtype=np.float64), is_float=mode == "F")
        return pixels, 0.0, bit_depth
    if mode == "1":
        return np.asarray(image, dtype=np.float32), 0.0, 1
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0, 0.0, 8
    if mode in ("LA", "La"):
        gray_alpha = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
        return gray_alpha[..., 0] * gray_alpha[..., 1], 0.0, 8
    rgb = _composited_rgb(image)
    return rgb @ _LUMA, _chroma(rgb), 8


def _composited_rgb(image: Image.Image) -> np.ndarray:
    """RGB in [0, 1] of a colour, palette or CMYK image; transparent pixels are composited over black."""
    if image.mode not in ("RGBA", "RGBa", "PA") and "transparency" not in image.info:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    return rgba[..., :3] * rgba[..., 3:]


def _wide_to_unit(values: np.ndarray, *, is_float: bool) -> tuple[np.ndarray, int]:
    """32-bit integer or float pixels and their bit depth.

    Integers within 0..65535 are 16-bit data (scaled by 65535) and floats within [0, 1] are kept;
    anything else is stretched over its own range.
    """
    low, high = float(values.min()), float(values.max())
    if is_float and low >= 0.0 and high <= 1.0:
        return values, 32
    if not is_float and low >= 0.0 and high <= 65535.0:
        return values / 65535.0, 16
    return _normalise(values, low, high), 32


def _chroma(rgb: np.ndarray) -> float:
    """Mean of max(R, G, B) - min(R, G, B) over the pixels of an RGB array in [0, 1]."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # much faster than reducing along axis -1
    return float(np.mean(np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)))


def _normalise(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] onto [0, 1]; a flat range gives zeros."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return (values - low) / (high - low)


def _finish(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)


# --- DICOM ------------------------------------------------------------------------------------------


def read_dicom_header(path: str | os.PathLike[str]) -> Dataset:
    """The header (everything but the pixel data) of the DICOM file at ``path``, preamble or not.

    Raises :class:`~pneumoscan.errors.ImageReadError` naming the file when it cannot be read, is no
    DICOM file (:class:`~pneumoscan.errors.UnsupportedImageError`) or is damaged.
    """
    name = os.fspath(path)
    return read_dicom_header_bytes(_read_file(name), name)


def read_dicom_header_bytes(data: bytes, name: str) -> Dataset:
    """:func:`read_dicom_header` of a file held in memory; ``name`` is only used in error messages."""
    dataset = _dicom_dataset(data, name, MAX_PIXELS, stop_before_pixels=True)
    if dataset is None:
        raise _error(name, "not a DICOM file", UnsupportedImageError)
    return dataset


def _has_preamble(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM file written by the standard (``DICM`` at byte 128)."""
    return data[128:132] == b"DICM"


def _dicom_dataset(
    data: bytes, name: str, max_pixels: int, *, stop_before_pixels: bool = False
) -> Dataset | None:
    """The DICOM data set in ``data``, or None when it is none: the one test of "is this DICOM".

    A file with the preamble is DICOM (damaged: ImageReadError); one without it is when pydicom
    parses an image's data set out of it. Callers try Pillow first on files without the preamble.
    """
    if _has_preamble(data):
        return _read_dicom(data, name, max_pixels, stop_before_pixels=stop_before_pixels)
    return _read_headerless_dicom(data, name, max_pixels, stop_before_pixels=stop_before_pixels)


def _read_dicom(data: bytes, name: str, max_pixels: int, *, stop_before_pixels: bool = False) -> Dataset:
    _check_inflated_size(data, name, max_pixels)
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom reports damaged files with many exception types
        raise _error(name, f"DICOM file is damaged ({_detail(exc)}); re-export it") from exc


def _read_headerless_dicom(
    data: bytes, name: str, max_pixels: int, *, stop_before_pixels: bool = False
) -> Dataset | None:
    """A DICOM dataset written without the 128-byte preamble, or None if ``data`` is not one."""
    _check_inflated_size(data, name, max_pixels)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
    except Exception:  # forced parsing of a non-DICOM file fails in arbitrary ways
        return None
    if not {"PixelData", "SOPClassUID", "Rows"} & set(dataset.dir()):
        return None
    if "TransferSyntaxUID" not in dataset.file_meta:  # record the encoding pydicom found while parsing
        implicit, little_endian = dataset.original_encoding
        explicit = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
    return dataset


def _file_meta(data: bytes) -> tuple[Dataset, int]:
    """The file meta information of ``data`` (preamble or not; empty when it has none) and the offset
    where the data set after it starts."""
    fileobj = io.BytesIO(data)
    read_preamble(fileobj, force=True)
    meta = _read_file_meta_info(fileobj)
    return meta, fileobj.tell()


def _check_inflated_size(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse a deflated data set that would inflate beyond :func:`max_dataset_bytes`.

    pydicom inflates the whole data set at once, whatever its size; here it is inflated in
    :data:`_INFLATE_PIECE` pieces that are counted and dropped. Damaged files pass (pydicom reports them).
    """
    try:
        meta, start = _file_meta(data)
    except Exception:  # no readable file meta information: pydicom reports it, or guesses the encoding
        return
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    limit = max_dataset_bytes(max_pixels)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    stream = memoryview(data)[start:]
    inflated = 0
    for start in range(0, len(stream), _INFLATE_PIECE):
        pending: bytes | memoryview = stream[start : start + _INFLATE_PIECE]
        while pending and not inflater.eof:
            try:
                inflated += len(inflater.decompress(pending, _INFLATE_PIECE))
            except zlib.error:
                return
            if inflated > limit:
                raise _error(
                    name,
                    f"deflated DICOM data set inflates to over {limit / 2**20:.0f} MiB, more than an image "
                    f"of up to {max_pixels} pixels needs; re-export it uncompressed",
                    ImageTooLargeError,
                )
            pending = inflater.unconsumed_tail


CHEST_MODALITIES = ("CR", "DX", "DR")
LATERAL_VIEWS = ("LL", "RL", "LATERAL", "LAT")
CHEST_BODY_PARTS = (
    "CHEST", "THORAX", "LUNG",  # DICOM (CID 4031 uses CHEST) and English
    "TORAX", "PECHO",  # Spanish, Portuguese
    "THORAKS", "BRUST", "BORST", "BROST",  # Scandinavian, German, Dutch
    "POITRINE", "TORACE", "TORACICO",  # French, Italian
    "KLATKA", "HRUDNIK", "MELLKAS", "GOGUS",  # Polish, Czech/Slovak, Hungarian, Turkish
)  # fmt: skip
"""Words a BodyPartExamined holds for the chest, upper-cased without accents, found anywhere in it
(``THORAX PA``, ``TÓRAX``, ``BRUSTKORB``)."""
LATERAL_VIEW_CODES = frozenset({"399073003", "399198007", "399173006", "R-102CD", "R-10232", "R-10236"})
"""ViewCodeSequence codes of lateral views (CID 4010: SNOMED CT lateral, right and left lateral, and
their older SNOMED RT codes)."""
SOP_CLASS_MODALITIES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",
    "1.2.840.10008.5.1.4.1.1.1.2": "MG",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG",
    "1.2.840.10008.5.1.4.1.1.1.3": "IO",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "IO",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",
    "1.2.840.10008.5.1.4.1.1.6.1": "US",
    "1.2.840.10008.5.1.4.1.1.6.2": "US",
    "1.2.840.10008.5.1.4.1.1.20": "NM",
    "1.2.840.10008.5.1.4.1.1.128": "PT",
    "1.2.840.10008.5.1.4.1.1.130": "PT",
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",
    "1.2.840.10008.5.1.4.1.1.12.2": "RF",
}
"""The modality of image storage SOP classes that imply one, for files whose Modality is empty
(Secondary Capture and other SOP classes that any modality may use are not listed)."""


def dicom_refusals(dataset: Dataset) -> tuple[str, ...]:
    """Why a DICOM header says the image is no frontal chest radiograph (empty: nothing against it).

    Refused: a Modality other than CR/DX/DR (CT, MR, US, ...; when Modality is empty, the one its
    SOP class implies), a BodyPartExamined that is present and names no chest in any of
    :data:`CHEST_BODY_PARTS`, a lateral ViewPosition (LL/RL) or ViewCodeSequence code. Missing
    attributes are not held against a file.
    """
    reasons = []
    modality = str(dataset.get("Modality") or "").strip().upper()
    source = "Modality"
    if not modality:
        modality = SOP_CLASS_MODALITIES.get(str(dataset.get("SOPClassUID") or "").strip(), "")
        source = "SOP Class UID says the modality"
    if modality and modality not in CHEST_MODALITIES:
        reasons.append(f"DICOM {source} is {modality}, not a radiograph (CR/DX/DR)")
    body_part = str(dataset.get("BodyPartExamined") or "").strip().upper()
    plain = "".join(c for c in unicodedata.normalize("NFKD", body_part) if not unicodedata.combining(c))
    if body_part and not any(word in plain for word in CHEST_BODY_PARTS):
        reasons.append(f"DICOM BodyPartExamined is {body_part}, not CHEST")
    view = str(dataset.get("ViewPosition") or "").strip().upper()
    if view in LATERAL_VIEWS:
        reasons.append(
            f"DICOM ViewPosition is {view}, a lateral view; the model judges frontal (PA/AP) films"
        )
    elif lateral := _lateral_view_code(dataset):
        reasons.append(
            f"DICOM ViewCodeSequence is {lateral}, a lateral view; the model judges frontal (PA/AP) films"
        )
    return tuple(reasons)


def _lateral_view_code(dataset: Dataset) -> str:
    """The meaning (or value) of a lateral code in the ViewCodeSequence; empty when there is none."""
    for item in dataset.get("ViewCodeSequence") or []:
        if str(item.get("CodeValue") or "").strip() in LATERAL_VIEW_CODES:
            return str(item.get("CodeMeaning") or item.CodeValue)
    return ""


def _decode_dicom(dataset: Dataset, name: str, max_pixels: int, accept_refused: bool) -> DecodedImage:
    refusals = dicom_refusals(dataset)
    if refusals and not accept_refused:
        raise InputRefusedError(name, "; ".join(refusals))
    photometric, bits_stored = _check_dicom_header(dataset, name, max_pixels)
    _check_decoder(dataset, name)
    _check_frame_size(dataset, name, max_pixels)
    try:
        pixels = dataset.pixel_array
        if pixels.ndim != (2 if photometric in _MONOCHROME else 3):
            raise ValueError(f"{photometric} pixel data has shape {pixels.shape}")
        if photometric in _MONOCHROME:
            gray, colourfulness = _monochrome_to_unit(pixels, dataset, photometric, bits_stored), 0.0
        else:
            rgb = pixels.astype(np.float32) / float(2**bits_stored - 1)
            gray, colourfulness = rgb @ _LUMA, _chroma(rgb)
    except Exception as exc:  # decoders and LUT code raise ValueError, RuntimeError, KeyError, ...
        raise _error(name, f"DICOM pixel data cannot be decoded ({_detail(exc)}); re-export it") from exc
    return DecodedImage(_finish(gray), colourfulness, "DICOM", bits_stored, refusals)


def _check_dicom_header(dataset: Dataset, name: str, max_pixels: int) -> tuple[str, int]:
    """Refuse datasets that are not a single-frame grayscale/RGB image; return photometric, BitsStored."""
    if "PixelData" not in dataset:
        raise _error(name, "DICOM file has no pixel data (not an image, or cut short); pass a radiograph")
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        bits_stored = int(dataset.BitsStored)
    except (AttributeError, TypeError, ValueError) as exc:
        raise _error(name, f"DICOM image header is incomplete ({_detail(exc)}); re-export it") from exc
    if frames > 1:
        raise _error(name, f"DICOM file is multi-frame ({frames} frames); pass a single-frame radiograph")
    _check_size(name, columns, rows, max_pixels)
    photometric = str(dataset.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in _MONOCHROME | _COLOUR_PHOTOMETRICS:
        raise _error(
            name,
            f"DICOM photometric interpretation {photometric or '(missing)'} is not supported; "
            "pass a grayscale (MONOCHROME1/MONOCHROME2) or RGB image",
        )
    return photometric, bits_stored


def _check_frame_size(dataset: Dataset, name: str, max_pixels: int) -> None:
    """Measure a compressed frame by its own codestream header before it is decoded.

    The decoder would otherwise decode whatever size the codestream says, whatever the DICOM header
    claims (a 64x64 header can wrap a 9000x9000 JPEG).
    """
    uid = dataset.file_meta.get("TransferSyntaxUID")
    if uid is None or not uid.is_encapsulated:
        return  # native pixel data: its size is the header's, bounded by the file's length
    try:
        frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    except Exception as exc:  # damaged encapsulation raises ValueError, StopIteration, struct.error, ...
        raise _error(name, f"DICOM pixel data cannot be decoded ({_detail(exc)}); re-export it") from exc
    size = _codestream_size(frame)
    if size is None:
        return  # RLE and unknown codecs decode to the header's size
    width, height = size
    _check_size(name, width, height, max_pixels)
    if (width, height) != (int(dataset.Columns), int(dataset.Rows)):
        raise _error(
            name,
            f"DICOM frame is {width}x{height} pixels but its header says {dataset.Columns}x{dataset.Rows}; "
            "re-export it",
        )


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a JPEG, JPEG-LS or JPEG 2000 codestream, else None."""
    is_jp2 = frame[4:12] == b"jP  \r\n\x87\n"  # a JP2 file wraps the codestream in boxes
    siz = frame.find(_J2K_START) if is_jp2 else (0 if frame.startswith(_J2K_START) else -1)
    if siz >= 0 and len(frame) >= siz + 24:
        x_size, y_size, x_offset, y_offset = struct.unpack(">4I", frame[siz + 8 : siz + 24])
        return x_size - x_offset, y_size - y_offset
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(frame) and frame[pos] == 0xFF:
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", frame[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # a scan before any frame header
            return None
        pos += 2 + int.from_bytes(frame[pos + 2 : pos + 4], "big")
    return None


def _check_decoder(dataset: Dataset, name: str) -> None:
    """Refuse a compressed transfer syntax that no installed pydicom plugin can decode."""
    uid = dataset.file_meta.get("TransferSyntaxUID")
    if uid is None:
        return  # pixel_array reports the missing syntax itself
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:
        available = False
    if not available:
        label = uid.name if uid.name == str(uid) else f"{uid.name} ({uid})"
        raise _error(
            name,
            f"DICOM transfer syntax {label} cannot be decoded here; re-export it uncompressed "
            "or install a pydicom decoder plugin such as pylibjpeg",
        )


def _monochrome_to_unit(
    stored: np.ndarray, dataset: Dataset, photometric: str, bits_stored: int
) -> np.ndarray:
    """Modality LUT, then VOI LUT/window (or a range stretch), scaled to [0, 1] with bones bright."""
    values = apply_modality_lut(stored, dataset)
    if _uses_voi_lut_sequence(dataset) and not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by integer values
    if _has_voi(dataset):
        unit = _normalise(apply_voi_lut(values, dataset), *_voi_output_range(dataset))
    elif bits_stored <= 8:
        unit = _normalise(values, *_modality_output_range(dataset, bits_stored))
    else:
        unit = _normalise(values, float(values.min()), float(values.max()))
    return 1.0 - unit if _shown_inverted(dataset, photometric) else unit


def _shown_inverted(dataset: Dataset, photometric: str) -> bool:
    """Whether the film is displayed inverted: MONOCHROME1, or a Presentation LUT Shape of INVERSE.

    A MONOCHROME1 film with INVERSE is inverted once: the DX and mammography IODs require that
    pairing, where INVERSE restates MONOCHROME1's own inversion rather than adding another.
    """
    inverse = str(dataset.get("PresentationLUTShape") or "").strip().upper() == "INVERSE"
    return photometric == "MONOCHROME1" or inverse


def _uses_voi_lut_sequence(dataset: Dataset) -> bool:
    """Whether apply_voi_lut will use the VOI LUT Sequence (it prefers it over windowing)."""
    sequence = dataset.get("VOILUTSequence")
    if not sequence:
        return False
    return sequence[0].get("LUTDescriptor") is not None and sequence[0].get("LUTData") is not None


def _has_voi(dataset: Dataset) -> bool:
    has_window = dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None
    return has_window or _uses_voi_lut_sequence(dataset)


def _range_of(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def _voi_output_range(dataset: Dataset) -> tuple[float, float]:
    """The range apply_voi_lut maps onto: the LUT's entries, or the window's output limits."""
    if _uses_voi_lut_sequence(dataset):
        entries, first_mapped = dataset.VOILUTSequence[0].LUTDescriptor[:2]
        probe = np.arange(first_mapped, first_mapped + (entries or 2**16), dtype=np.int64)
    else:
        probe = np.array([-np.inf, np.inf])
    return _range_of(apply_voi_lut(probe, dataset))


def _modality_output_range(dataset: Dataset, bits: int) -> tuple[float, float]:
    """The nominal range of ``bits``-bit stored values (signed or not) after the modality LUT."""
    signed = int(dataset.get("PixelRepresentation") or 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return _range_of(apply_modality_lut(np.array([low, high], dtype=np.int64), dataset))
