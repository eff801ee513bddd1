"""Decoding of JPEG/PNG/TIFF/DICOM files into grayscale arrays, and the errors for unusable files."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_compressed_dicom, write_deflated_dicom, write_dicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless

from pneumoscan.data import imageio
from pneumoscan.data.imageio import (
    MAX_PIXELS,
    SUPPORTED_SUFFIXES,
    DecodedImage,
    decoded_size,
    is_image_file,
    read_image,
    read_image_bytes,
)
from pneumoscan.errors import ImageReadError, ImageTooLargeError, UnsupportedImageError


def gradient(height: int = 48, width: int = 64) -> np.ndarray:
    """A uint8 image using the whole 0..255 range, different along both axes."""
    rows = np.linspace(0, 255, height)[:, None]
    columns = np.linspace(0, 255, width)[None, :]
    return ((rows + columns) / 2).round().astype(np.uint8)


def save(image: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    image.save(path, format=fmt, **params)
    return path


def assert_unit_gray(decoded: DecodedImage, shape: tuple[int, int]) -> None:
    assert decoded.pixels.shape == shape
    assert decoded.pixels.dtype == np.float32
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0


# --- Pillow formats ---------------------------------------------------------------------------------


def test_png_8bit_round_trip(tmp_path: Path) -> None:
    array = gradient()
    decoded = read_image(save(Image.fromarray(array), tmp_path / "x.png"))
    assert_unit_gray(decoded, array.shape)
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=1e-6)
    assert (decoded.source_format, decoded.bit_depth, decoded.colourfulness) == ("PNG", 8, 0.0)


def test_jpeg_round_trip(tmp_path: Path) -> None:
    array = gradient()
    decoded = read_image(save(Image.fromarray(array), tmp_path / "x.jpg", quality=95))
    assert_unit_gray(decoded, array.shape)
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=0.03)
    assert (decoded.source_format, decoded.bit_depth) == ("JPEG", 8)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_keeps_full_precision(tmp_path: Path, fmt: str) -> None:
    array = np.array([[0, 1000, 1001, 65535]] * 4, dtype=np.uint16)
    decoded = read_image(save(Image.fromarray(array), tmp_path / f"x.{fmt.lower()}", fmt))
    assert decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.pixels[0], array[0] / 65535.0, rtol=1e-6)
    assert decoded.pixels[0, 1] < decoded.pixels[0, 2]


@pytest.mark.parametrize(
    ("array", "bit_depth", "expected"),
    [
        (np.array([[0, 1000, 65535]], dtype=np.int32), 16, [0.0, 1000 / 65535, 1.0]),  # 16-bit data in "I"
        (np.array([[-10, 0, 90]], dtype=np.int32), 32, [0.0, 0.1, 1.0]),  # stretched over its range
        (np.array([[0.0, 0.25, 0.5]], dtype=np.float32), 32, [0.0, 0.25, 0.5]),  # floats in [0, 1] kept
        (np.array([[-1.0, 0.0, 3.0]], dtype=np.float32), 32, [0.0, 0.25, 1.0]),
    ],
)
def test_32bit_tiff(tmp_path: Path, array: np.ndarray, bit_depth: int, expected: list[float]) -> None:
    decoded = read_image(save(Image.fromarray(array), tmp_path / "x.tif"))
    assert decoded.bit_depth == bit_depth
    np.testing.assert_allclose(decoded.pixels[0], expected, atol=1e-6)


def test_rgb_uses_601_luma_and_measures_colour(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:] = (0, 0, 255)
    decoded = read_image(save(Image.fromarray(rgb), tmp_path / "c.png"))
    np.testing.assert_allclose(decoded.pixels[0, 0], 0.299, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels[0, 7], 0.114, atol=1e-6)
    assert decoded.colourfulness == pytest.approx(1.0)


def test_rgb_with_equal_channels_is_not_colourful(tmp_path: Path) -> None:
    array = gradient()
    decoded = read_image(save(Image.fromarray(array).convert("RGB"), tmp_path / "g.png"))
    assert decoded.colourfulness == 0.0
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=1e-6)


def test_palette_image(tmp_path: Path) -> None:
    array = gradient()
    decoded = read_image(save(Image.fromarray(array).convert("P"), tmp_path / "p.png"))
    assert_unit_gray(decoded, array.shape)
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=0.03)
    assert decoded.colourfulness < 0.01


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_black(tmp_path: Path, mode: str) -> None:
    image = Image.new(mode, (4, 2), (200,) * (len(mode) - 1) + (255,))
    image.putpixel((0, 0), (200,) * (len(mode) - 1) + (0,))
    image.putpixel((1, 0), (200,) * (len(mode) - 1) + (51,))
    decoded = read_image(save(image, tmp_path / "a.png"))
    np.testing.assert_allclose(decoded.pixels[0, :3], [0.0, 200 / 255 * 0.2, 200 / 255], atol=1e-6)
    assert decoded.colourfulness == 0.0


def test_cmyk_image(tmp_path: Path) -> None:
    image = Image.new("CMYK", (6, 4), (0, 0, 0, 0))  # no ink: white
    image.putpixel((0, 0), (0, 0, 0, 255))  # full black ink
    decoded = read_image(save(image, tmp_path / "k.tiff"))
    assert decoded.pixels[0, 0] == 0.0
    assert decoded.pixels[3, 5] == 1.0


def test_one_bit_image(tmp_path: Path) -> None:
    array = np.zeros((8, 8), dtype=bool)
    array[:, :3] = True
    decoded = read_image(save(Image.fromarray(array), tmp_path / "b.png"))
    assert decoded.bit_depth == 1
    np.testing.assert_array_equal(decoded.pixels, array.astype(np.float32))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((20, 40), dtype=np.uint8)  # landscape, bright block top-left
    array[:6, :6] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display needs a 90-degree clockwise turn
    path = save(Image.fromarray(array), tmp_path / "o.jpeg", quality=95, exif=exif.tobytes())
    pixels = read_image(path).pixels
    assert pixels.shape == (40, 20)
    assert pixels[:4, -4:].mean() > 0.9  # top-left went to top-right
    assert pixels[-4:, :4].mean() < 0.1


def test_format_comes_from_content_not_suffix(tmp_path: Path) -> None:
    array = gradient()
    decoded = read_image(save(Image.fromarray(array), tmp_path / "really_png.jpeg", "PNG"))
    assert decoded.source_format == "PNG"
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=1e-6)


def test_read_image_bytes_matches_read_image(tmp_path: Path) -> None:
    path = save(Image.fromarray(gradient()), tmp_path / "x.png")
    from_bytes = read_image_bytes(path.read_bytes(), "upload.png")
    np.testing.assert_array_equal(from_bytes.pixels, read_image(str(path)).pixels)


def test_is_image_file() -> None:
    assert {".jpeg", ".jpg", ".png", ".dcm", ".dicom", ".bmp", ".tif", ".tiff"} == SUPPORTED_SUFFIXES
    assert is_image_file("a/b/Scan.JPG") and is_image_file(Path("x.dcm"))
    assert not is_image_file("notes.txt") and not is_image_file("dcm")
    assert not is_image_file("__MACOSX/._scan.jpeg")


# --- DICOM ------------------------------------------------------------------------------------------


def test_dicom_8bit_matches_png(tmp_path: Path) -> None:
    array = gradient()
    from_png = read_image(save(Image.fromarray(array), tmp_path / "x.png"))
    from_dicom = read_image(write_dicom(tmp_path / "x.dcm", array))
    np.testing.assert_allclose(from_dicom.pixels, from_png.pixels, atol=1e-6)
    assert (from_dicom.source_format, from_dicom.bit_depth, from_dicom.colourfulness) == ("DICOM", 8, 0.0)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    array = gradient()
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", array, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels, 1.0 - array / 255.0, atol=1e-6)


def test_dicom_12bit_with_rescale_is_stretched_to_unit(tmp_path: Path) -> None:
    stored = np.linspace(100, 4000, 48 * 64).reshape(48, 64).astype(np.uint16)
    path = write_dicom(tmp_path / "r.dcm", stored, bits_stored=12, slope=2.0, intercept=-1024.0)
    decoded = read_image(path)
    expected = (stored - 100.0) / (4000.0 - 100.0)  # a linear rescale does not change the stretch
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)
    assert decoded.bit_depth == 12


def test_dicom_window_is_applied_after_rescale(tmp_path: Path) -> None:
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))  # 4 x 256 ramp
    # rescaled values are stored - 1000; window 1000 +- 500 covers stored 1500..2500
    path = write_dicom(tmp_path / "w.dcm", stored, bits_stored=12, intercept=-1000.0, window=(1000.0, 1000.0))
    pixels = read_image(path).pixels[0]
    assert np.all(pixels[stored[0] < 1490] == 0.0)
    assert np.all(pixels[stored[0] > 2510] == 1.0)
    assert pixels[stored[0] == 2000][0] == pytest.approx(0.5, abs=0.01)
    assert np.all(np.diff(pixels) >= 0)


def test_dicom_window_on_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))
    path = write_dicom(
        tmp_path / "w1.dcm", stored, bits_stored=12, photometric="MONOCHROME1", window=(2048, 1024)
    )
    pixels = read_image(path).pixels[0]
    assert pixels[0] == 1.0 and pixels[-1] == 0.0


def test_dicom_voi_lut_sequence_is_applied_and_scaled_by_its_entries(tmp_path: Path) -> None:
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))
    path = write_dicom(tmp_path / "lut.dcm", stored, bits_stored=12, intercept=100.0, window=(0.0, 1.0))
    dataset = pydicom.dcmread(path)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 100, 16]  # 16 bits declared, 12 used: a common quirk
    lut.LUTData = np.arange(4095, -1, -1, dtype="<u2").tobytes()  # inverting, so visibly applied
    dataset.VOILUTSequence = [lut]  # preferred over the (useless) window
    dataset.save_as(path)
    np.testing.assert_allclose(read_image(path).pixels, 1.0 - stored / 4095.0, atol=1e-6)


def test_dicom_signed_16bit_is_stretched(tmp_path: Path) -> None:
    stored = np.arange(-100, 100, dtype=np.int16).reshape(10, 20)
    decoded = read_image(write_dicom(tmp_path / "s.dcm", stored))
    np.testing.assert_allclose(decoded.pixels, (stored + 100.0) / 199.0, atol=1e-6)


def test_dicom_rgb_and_ybr(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:] = (128, 128, 128)
    as_rgb = read_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    np.testing.assert_allclose(as_rgb.pixels[0, [0, 7]], [0.299, 128 / 255], atol=1e-6)
    assert as_rgb.colourfulness == pytest.approx(0.5)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    as_ybr = read_image(write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL"))
    np.testing.assert_allclose(as_ybr.pixels, as_rgb.pixels, atol=0.02)


def test_dicom_found_by_content(tmp_path: Path) -> None:
    array = gradient()
    dicom = write_dicom(tmp_path / "x.dcm", array).read_bytes()
    disguised = tmp_path / "scan.png"
    disguised.write_bytes(dicom)
    np.testing.assert_allclose(read_image(disguised).pixels, array / 255.0, atol=1e-6)


def test_dicom_without_preamble_or_file_meta(tmp_path: Path) -> None:
    """Some old PACS exports are a bare implicit-VR dataset: no preamble, no "DICM", no file meta."""
    array = gradient()
    dataset = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", array))
    del dataset.file_meta
    dataset.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, implicit_vr=True, little_endian=True)
    assert buffer.getvalue()[128:132] != b"DICM"
    decoded = read_image_bytes(buffer.getvalue(), "raw")
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=1e-6)


# --- refusals ---------------------------------------------------------------------------------------


def refused(path: str | os.PathLike[str], **kwargs: int) -> str:
    with pytest.raises(ImageReadError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert os.path.basename(path) in message
    return message


def test_multiframe_dicom_refused(tmp_path: Path) -> None:
    message = refused(write_dicom(tmp_path / "cine.dcm", gradient(), frames=3))
    assert "multi-frame (3 frames); pass a single-frame radiograph" in message


def test_dicom_without_pixel_data_refused(tmp_path: Path) -> None:
    assert "has no pixel data" in refused(write_dicom(tmp_path / "sr.dcm", gradient(), with_pixels=False))


def test_dicom_with_undecodable_transfer_syntax_refused(tmp_path: Path) -> None:
    path = write_compressed_dicom(tmp_path / "ls.dcm", JPEGLSLossless, b"\xff\x4f" + b"\x00" * 64)
    message = refused(path)
    if not get_decoder(JPEGLSLossless).is_available:
        assert "JPEG-LS Lossless" in message and JPEGLSLossless in message


def test_dicom_with_corrupt_compressed_data_refused(tmp_path: Path) -> None:
    path = write_compressed_dicom(tmp_path / "j2k.dcm", JPEG2000Lossless, b"not a jpeg 2000 stream" * 4)
    message = refused(path)
    if get_decoder(JPEG2000Lossless).is_available:
        assert "cannot be decoded" in message


def test_deflated_dicom_is_read(tmp_path: Path) -> None:
    array = gradient()
    path = write_deflated_dicom(tmp_path / "deflated.dcm", array, padding_mib=2)
    np.testing.assert_allclose(read_image(path).pixels, array / 255.0, atol=1e-6)
    assert decoded_size(path.read_bytes()) == (64, 48)


def test_deflate_bomb_refused_before_it_is_inflated(tmp_path: Path) -> None:
    """A few kB of deflate that inflate beyond any image the cap allows: measured, never held."""
    max_pixels = 64 * 48
    limit = imageio.max_dataset_bytes(max_pixels)
    bomb = write_deflated_dicom(tmp_path / "bomb.dcm", gradient(), padding_mib=limit // 2**20 + 8)
    assert bomb.stat().st_size < 2**20
    tracemalloc.start()
    try:
        message = refused(bomb, max_pixels=max_pixels)
        assert decoded_size(bomb.read_bytes(), max_pixels=max_pixels) == (0, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "deflated DICOM data set inflates to over" in message and "re-export it uncompressed" in message
    assert peak < limit / 4


def test_large_dicom_refused_before_decoding(tmp_path: Path) -> None:
    message = refused(write_dicom(tmp_path / "big.dcm", gradient()), max_pixels=1000)
    assert "64x48 pixels, above the 1000-pixel limit; downscale it first" in message


def _valid_jpeg(progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gradient(128, 128)).save(buffer, "JPEG", progressive=progressive)
    return buffer.getvalue()


def _noisy_jpeg(side: int = 256, progressive: bool = False) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=90, progressive=progressive)
    return buffer.getvalue()


def _cut_and_closed(data: bytes) -> bytes:
    """The first half of a JPEG with an end-of-image marker appended: libjpeg pads the rest with grey."""
    return data[: len(data) // 2] + b"\xff\xd9"


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda tmp: tmp / "missing.jpeg", "file not found"),
    "directory": (lambda tmp: _mkdir(tmp / "folder.png"), "is a folder"),
    "empty": (lambda tmp: _write(tmp / "empty.png", b""), "file is empty"),
    "text": (
        lambda tmp: _write(tmp / "scan.jpeg", b"patient notes\n" * 20),
        "not a readable image (cannot identify image file); pass a JPEG, PNG or DICOM file",
    ),
    "truncated jpeg": (
        lambda tmp: _write(tmp / "cut.jpeg", _valid_jpeg()[: len(_valid_jpeg()) // 2]),
        "truncated or corrupt",
    ),
    "jpeg cut and closed with an end marker": (
        lambda tmp: _write(tmp / "cut.jpeg", _cut_and_closed(_noisy_jpeg())),
        "truncated or corrupt (Corrupt JPEG data: premature end of data segment)",
    ),
    "progressive jpeg cut and closed": (
        lambda tmp: _write(tmp / "cut.jpeg", _cut_and_closed(_noisy_jpeg(progressive=True))),
        "truncated or corrupt",
    ),
    "fifo": (lambda tmp: _fifo(tmp / "pipe.jpeg"), "is not a regular file"),
    "truncated dicom": (
        lambda tmp: _write(tmp / "cut.dcm", write_dicom(tmp / "x.dcm", gradient()).read_bytes()[:-100]),
        "DICOM pixel data cannot be decoded",
    ),
    "dicom cut before its pixels": (
        lambda tmp: _write(tmp / "cut.dcm", write_dicom(tmp / "x.dcm", gradient()).read_bytes()[:400]),
        "has no pixel data",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # a plain open() would wait here forever for a writer
    return path


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_refused_with_one_line(tmp_path: Path, case: str) -> None:
    make, expected = BAD_FILES[case]
    assert expected in refused(make(tmp_path))


def test_complete_jpegs_pass_the_truncation_check(tmp_path: Path) -> None:
    for progressive in (False, True):
        data = _noisy_jpeg(progressive=progressive)
        assert read_image_bytes(data, "whole.jpeg").pixels.shape == (256, 256)


def test_device_and_oversized_files_refused_without_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UnsupportedImageError, match="is not a regular file"):
        read_image("/dev/zero")
    sparse = tmp_path / "huge.jpeg"
    with sparse.open("wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GiB of nothing, as a probe would send
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 2**20)
    with pytest.raises(ImageTooLargeError, match=r"huge\.jpeg: file is 3072 MiB, over the 1 MiB limit"):
        read_image(sparse)


def test_error_classes_say_what_went_wrong(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImageError):
        read_image_bytes(b"patient notes\n" * 20, "notes.jpeg")
    with pytest.raises(ImageTooLargeError):
        read_image_bytes(_valid_jpeg(), "big.jpeg", max_pixels=100)
    with pytest.raises(ImageReadError) as caught:
        read_image_bytes(_cut_and_closed(_noisy_jpeg()), "cut.jpeg")
    assert type(caught.value) is ImageReadError
    assert caught.value.__cause__ is not None  # --debug shows the library's own error


def test_dicom_frame_is_measured_by_its_own_header(tmp_path: Path) -> None:
    """A small DICOM header wrapping a large JPEG frame is refused before the frame is decoded."""
    frame = _valid_jpeg()  # 128 x 128
    path = write_compressed_dicom(tmp_path / "wrapped.dcm", JPEGBaseline8Bit, frame, rows=64, columns=64)
    with pytest.raises(ImageTooLargeError, match="128x128 pixels, above the 10000-pixel limit"):
        read_image(path, max_pixels=10_000)
    assert "frame is 128x128 pixels but its header says 64x64" in refused(path)


def test_decoded_size_reads_headers_only(tmp_path: Path) -> None:
    big = _noisy_jpeg(1024)
    assert decoded_size(big) == (1024, 1024)
    assert decoded_size(big, min_side=200) == (256, 256)  # JPEG draft scale, as read_image decodes it
    assert decoded_size(write_dicom(tmp_path / "x.dcm", gradient()).read_bytes()) == (64, 48)
    assert decoded_size(b"not an image") == (0, 0)


def test_image_above_max_pixels_refused(tmp_path: Path) -> None:
    path = save(Image.fromarray(gradient()), tmp_path / "big.png")
    assert "64x48 pixels, above the 3000-pixel limit" in refused(path, max_pixels=3000)
    assert MAX_PIXELS == 50_000_000


@pytest.mark.parametrize("pillow_limit", [3000, 1000])  # warning (> limit) and error (> 2 x limit)
def test_pillow_decompression_bomb_check_becomes_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    path = save(Image.fromarray(gradient()), tmp_path / "bomb.png")
    assert "too large" in refused(path)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(13, "Permission denied"), "permission denied"),
        (OSError(5, "Input/output error"), "cannot be read (Input/output error)"),
    ],
)
def test_unreadable_file_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, expected: str
) -> None:
    def failing_read(*args: object, **kwargs: object) -> None:
        raise error

    path = save(Image.fromarray(gradient()), tmp_path / "locked.png")
    monkeypatch.setattr(imageio, "read_regular_file", failing_read)  # chmod 0 does not stop root
    assert expected in refused(path)


def test_bytes_errors_use_the_given_name() -> None:
    with pytest.raises(ImageReadError, match=r"^upload\.jpeg: file is empty"):
        read_image_bytes(b"", "upload.jpeg")


def _coded(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@pytest.mark.parametrize(
    "body_part", ["CHEST", "THORAX", "TORAX", "TÓRAX", "PECHO", "BRUST", "BRUSTKORB", "POITRINE", "TORACE"]
)
def test_chest_in_local_languages_passes_the_header_gate(body_part: str) -> None:
    dataset = Dataset()
    dataset.Modality, dataset.BodyPartExamined = "DX", body_part
    assert imageio.dicom_refusals(dataset) == ()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"BodyPartExamined": "KNIE"}, "BodyPartExamined is KNIE, not CHEST"),
        ({"ViewCodeSequence": [_coded("399073003", "SCT", "lateral")]}, "ViewCodeSequence is lateral"),
        ({"ViewCodeSequence": [_coded("399198007", "SCT", "right lateral")]}, "is right lateral"),
        ({"ViewCodeSequence": [_coded("R-10236", "SRT", "left lateral")]}, "is left lateral"),
        ({"Modality": "", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, "says the modality is CT"),
    ],
)
def test_header_gate_refuses_what_only_codes_say(header: dict[str, object], reason: str) -> None:
    dataset = Dataset()
    dataset.Modality, dataset.SOPClassUID = "DX", "1.2.840.10008.5.1.4.1.1.1.1"
    for keyword, value in header.items():
        setattr(dataset, keyword, value)
    (refusal,) = imageio.dicom_refusals(dataset)
    assert reason in refusal


def test_header_gate_passes_frontal_codes_and_secondary_captures() -> None:
    dataset = Dataset()
    dataset.Modality, dataset.SOPClassUID = "", "1.2.840.10008.5.1.4.1.1.7"  # a digitised film
    dataset.ViewCodeSequence = [_coded("399348003", "SCT", "postero-anterior")]
    assert imageio.dicom_refusals(dataset) == ()
