"""Folders as PACS exports are: DICOM files without an extension, DICOMDIR media, compressed films,
and Presentation LUT Shape INVERSE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import study_header, write_dicom
from pydicom.fileset import FileSet
from pydicom.pixels import get_encoder
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from pneumoscan.data.imageio import find_image_files, read_image

PIXELS = (np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) * 2) % 4096


def _film(path: Path, **kwargs: object) -> Path:
    return write_dicom(path, PIXELS, bits_stored=12, header=study_header(generate_uid(), 1), **kwargs)


def test_dicom_files_without_extension_are_found_by_content(tmp_path: Path) -> None:
    _film(tmp_path / "IM000001")
    (tmp_path / "series").mkdir()
    uid_named = _film(tmp_path / "series" / "1.2.840.113619.2.55.3.7")
    _film(tmp_path / "IM000002", preamble=False)  # an old export: no preamble, no file meta
    (tmp_path / "README").write_text("not an image")
    (tmp_path / "notes.txt").write_text("x" * 200 + "DICM")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "noise").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    found = sorted(p.relative_to(tmp_path).as_posix() for p in find_image_files(tmp_path))
    assert found == ["IM000001", "IM000002", uid_named.relative_to(tmp_path).as_posix()]


def test_dicomdir_media_give_their_films_not_the_index(tmp_path: Path) -> None:
    fileset = FileSet()
    for number in (1, 2):
        dataset = pydicom.dcmread(_film(tmp_path / f"source{number}.dcm"))
        fileset.add(dataset)
        (tmp_path / f"source{number}.dcm").unlink()
    fileset.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").exists()
    found = list(find_image_files(tmp_path / "media"))
    assert len(found) == 2 and all(path.name != "DICOMDIR" and not path.suffix for path in found)
    assert read_image(found[0]).pixels.shape == PIXELS.shape


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_films_decode_like_uncompressed(tmp_path: Path, syntax: str) -> None:
    if not get_encoder(syntax).is_available:
        pytest.skip(f"no encoder for {syntax.name} to make the test file")
    plain = _film(tmp_path / "plain.dcm")
    dataset = pydicom.dcmread(plain)
    dataset.compress(syntax)
    dataset.save_as(tmp_path / "compressed.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "compressed.dcm").file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_image(tmp_path / "compressed.dcm").pixels, read_image(plain).pixels)


def _with_shape(path: Path, photometric: str, shape: str | None) -> np.ndarray:
    film = _film(path, photometric=photometric)
    if shape is not None:
        dataset = pydicom.dcmread(film)
        dataset.PresentationLUTShape = shape
        dataset.save_as(film, enforce_file_format=True)
    return read_image(film).pixels


def test_presentation_lut_shape_inverse_is_honoured(tmp_path: Path) -> None:
    plain = _with_shape(tmp_path / "a.dcm", "MONOCHROME2", None)
    identity = _with_shape(tmp_path / "b.dcm", "MONOCHROME2", "IDENTITY")
    inverse = _with_shape(tmp_path / "c.dcm", "MONOCHROME2", "INVERSE")
    np.testing.assert_array_equal(identity, plain)
    np.testing.assert_allclose(inverse, 1.0 - plain, atol=1e-6)
    # DX files pair MONOCHROME1 with INVERSE: that is one inversion, not two.
    monochrome1 = _with_shape(tmp_path / "d.dcm", "MONOCHROME1", None)
    np.testing.assert_array_equal(_with_shape(tmp_path / "e.dcm", "MONOCHROME1", "INVERSE"), monochrome1)
