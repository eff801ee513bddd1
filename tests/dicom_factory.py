"""Build small DICOM files in tests (uncompressed Explicit VR Little Endian unless asked otherwise)."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import set_pixel_data
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)
"""Type 2 patient and study attributes that anonymised films often lack altogether."""


def _base_dataset(header: Mapping[str, object] | None = None) -> Dataset:
    """A DX dataset with ``header`` applied by keyword; a value of None removes the attribute."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = DX_FOR_PRESENTATION
    dataset.Modality = "DX"
    dataset.PatientID = "TEST"
    for keyword, value in (header or {}).items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    return dataset


def study_header(study_uid: str, instance_number: int, **extra: object) -> dict[str, object]:
    """Patient, study, series and instance attributes of one film of a study (one series per film)."""
    return {
        "PatientName": "Test^Patient",
        "PatientID": "PNEUMO-1",
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyInstanceUID": study_uid,
        "StudyDate": "20240501",
        "StudyTime": "081500",
        "StudyID": "1",
        "AccessionNumber": "ACC1",
        "ReferringPhysicianName": "",
        "SeriesInstanceUID": generate_uid(),
        "SeriesNumber": instance_number,
        "SOPInstanceUID": generate_uid(),
        "InstanceNumber": instance_number,
        **extra,
    }


def anonymised_header(
    study_uid: str, instance_number: int, keep: tuple[str, ...] = (), **extra: object
) -> dict[str, object]:
    """:func:`study_header` as anonymisers write it: the Type 2 patient and study attributes are absent
    (not empty), except those named in ``keep``."""
    dropped = {keyword: None for keyword in TYPE2_PATIENT_STUDY if keyword not in keep}
    return {**study_header(study_uid, instance_number), **dropped, **extra}


def write_dicom(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    frames: int = 1,
    with_pixels: bool = True,
    header: Mapping[str, object] | None = None,
    preamble: bool = True,
) -> Path:
    """Write ``pixels`` (uint8/uint16/int16, 2-D, or rows x columns x 3 for RGB/YBR) as a DICOM file.

    ``window`` is (centre, width); ``frames`` > 1 repeats the image as a multi-frame file;
    ``with_pixels=False`` keeps the image header but drops the Pixel Data element; ``header`` sets
    further attributes by keyword (e.g. ``{"Modality": "CT"}`` or :func:`study_header`; None removes one).
    ``preamble=False`` writes a bare implicit VR data set as old PACS exports do: no 128-byte preamble,
    no ``DICM`` marker, no file meta information.
    """
    dataset = _base_dataset(header)
    array = np.stack([pixels] * frames) if frames > 1 else pixels
    set_pixel_data(dataset, array, photometric, bits_stored or pixels.dtype.itemsize * 8)
    if (slope, intercept) != (1.0, 0.0):
        dataset.RescaleSlope = slope
        dataset.RescaleIntercept = intercept
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    if not with_pixels:
        del dataset.PixelData
    if preamble:
        dataset.save_as(path, enforce_file_format=True)
    else:
        del dataset.file_meta
        dataset.save_as(path, implicit_vr=True, little_endian=True)
    return Path(path)


def write_compressed_dicom(
    path: str | os.PathLike[str],
    transfer_syntax: str,
    payload: bytes,
    *,
    rows: int = 8,
    columns: int = 8,
    header: Mapping[str, object] | None = None,
) -> Path:
    """Write a grayscale DICOM whose encapsulated (compressed) pixel data is ``payload``, e.g. garbage."""
    dataset = _base_dataset(header)
    set_pixel_data(dataset, np.zeros((rows, columns), dtype=np.uint16), "MONOCHROME2", 12)
    dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    dataset.PixelData = encapsulate([payload])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path, enforce_file_format=True)
    return Path(path)


def write_deflated_dicom(path: str | os.PathLike[str], pixels: np.ndarray, padding_mib: int = 0) -> Path:
    """Write 8-bit ``pixels`` as Deflated Explicit VR Little Endian, followed by ``padding_mib`` MiB of
    zeros in Data Set Trailing Padding (FFFC,FFFC): a valid film that inflates to any size.

    The zeros are deflated once per MiB after a full flush, so the identical pieces are repeated
    instead of compressed (a GiB of padding takes a fraction of a second and about 1 MB on disk).
    """
    dataset = _base_dataset()
    set_pixel_data(dataset, pixels, "MONOCHROME2", 8)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, dataset)
    if padding_mib:
        body.write(struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding_mib * 2**20))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    pieces = [deflater.compress(body.getvalue()), deflater.flush(zlib.Z_FULL_FLUSH)]
    if padding_mib:
        pieces.append((deflater.compress(bytes(2**20)) + deflater.flush(zlib.Z_FULL_FLUSH)) * padding_mib)
    pieces.append(deflater.flush())
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, dataset.file_meta)
    Path(path).write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(pieces))
    return Path(path)
