"""A prediction as DICOM objects that go back into the film's own study.

* a **Comprehensive SR** (TID 1500 measurement report, built with highdicom) holding the pneumonia
  probability (DCM 122157 "Probability"), the model's threshold (DCM 122411 "Threshold Value"), the
  finding "Pneumonia" (SCT 233604007) as Present/Absent, the source film as the image the group
  refers to, and the model as the algorithm (name and creation time as its version); a film the
  model refused is recorded as "Indeterminate" with a comment "not judged: <reason>" and no
  probability;
* with heat maps, a **Secondary Capture** of the heat-map overlay (RGB), the map the model file names.

Both copy the patient and study attributes of the source (its Type 2 ones left empty where the film
lacks them, as anonymised films often do), are marked as research content, and get
UIDs derived from the source SOP Instance UID and the model identity, so that the same film and model
always give the same objects: a second run finds them in the archive and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from pneumoscan import __version__
from pneumoscan.errors import PneumoscanError
from pneumoscan.model_file import ModelMeta
from pneumoscan.predict import Prediction

MANUFACTURER = "pneumoscan"
SERIES_DESCRIPTION_PREFIX = "pneumoscan"  # earlier results are recognised (and never predicted) by it
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
TYPE2_COPIED = (
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
"""Type 2 attributes (present, possibly empty) the results copy from the film; a film may lack them."""


@dataclass(frozen=True)
class ResultUIDs:
    """The UIDs a result for one film gets (the same on every run with the same model)."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str


def result_uids(source: Dataset, meta: ModelMeta) -> ResultUIDs:
    """Deterministic UIDs of the SR and SC made for ``source`` by the model ``meta``."""
    study, instance, model = str(source.StudyInstanceUID), str(source.SOPInstanceUID), meta.model_id()
    return ResultUIDs(
        sr_series=generate_uid(entropy_srcs=[study, model, "pneumoscan-sr-series"]),
        sr_instance=generate_uid(entropy_srcs=[instance, model, "pneumoscan-sr"]),
        sc_series=generate_uid(entropy_srcs=[study, model, "pneumoscan-sc-series"]),
        sc_instance=generate_uid(entropy_srcs=[instance, model, "pneumoscan-sc"]),
    )


def check_source(source: Dataset, name: str) -> None:
    """Refuse a source dataset whose results could not be filed into its study."""
    missing = [keyword for keyword in _REQUIRED if not source.get(keyword)]
    if missing:
        raise PneumoscanError(
            f"{name}: DICOM header lacks {', '.join(missing)}; cannot file a DICOM result into its study"
        )


def result_sr(source: Dataset, prediction: Prediction, meta: ModelMeta) -> Dataset:
    """The Comprehensive SR reporting ``prediction`` for the film ``source`` (a header is enough).

    Raises :class:`~pneumoscan.errors.PneumoscanError` (naming ``prediction.path``) when the film's
    header holds values no SR can carry.
    """
    with _building(prediction.path):
        return _result_sr(_with_type2(source), prediction, meta)


def heatmap_sc(source: Dataset, overlay: np.ndarray, meta: ModelMeta, name: str) -> Dataset:
    """The Secondary Capture of the heat-map ``overlay`` (uint8 RGB) for the film ``source``.

    Raises :class:`~pneumoscan.errors.PneumoscanError` (naming ``name``) when the film's header holds
    values no capture can carry.
    """
    with _building(name):
        return _heatmap_sc(_with_type2(source), overlay, meta)


def _with_type2(source: Dataset) -> Dataset:
    """``source`` (its elements shared) with each of :data:`TYPE2_COPIED` present, empty if absent."""
    filled = Dataset()
    filled.update(source)
    for keyword in TYPE2_COPIED:
        if filled.get(keyword) is None:
            setattr(filled, keyword, "")
    return filled


@contextmanager
def _building(name: str) -> Iterator[None]:
    """Turn highdicom's refusal of a header value (e.g. a PatientSex of ``X``) into a one-line error."""
    try:
        yield
    except (AttributeError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise PneumoscanError(
            f"{name}: its DICOM header cannot be carried into a result ({detail}); no result written for it"
        ) from None


def _result_sr(source: Dataset, prediction: Prediction, meta: ModelMeta) -> Dataset:
    import highdicom as hd

    uids = result_uids(source, meta)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[uids.sr_instance, "tracking"]), identifier="pneumonia"
        ),
        finding_type=PNEUMONIA,
        algorithm_id=_algorithm(meta),
        measurements=_measurements(prediction),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, _finding(prediction, meta))],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    if prediction.refused:
        note = hd.sr.TextContentItem(
            name=codes.DCM.Comment,
            value=f"not judged: {prediction.refusal_reason or 'refused by the model'}",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        group[0].ContentSequence.append(note)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=codes.SCT.ChestImaging,
        imaging_measurements=[group],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report,
        series_instance_uid=uids.sr_series,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_instance,
        instance_number=_instance_number(source),
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"{SERIES_DESCRIPTION_PREFIX} result (research use)",
        software_versions=__version__,
        content_qualification="RESEARCH",
    )


def _heatmap_sc(source: Dataset, overlay: np.ndarray, meta: ModelMeta) -> Dataset:
    import highdicom as hd

    uids = result_uids(source, meta)
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(overlay, dtype=np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=("L", "F"),  # replaced below: highdicom needs a value, the film has its own
        series_instance_uid=uids.sc_series,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance,
        instance_number=_instance_number(source),
        manufacturer=MANUFACTURER,
        series_description=f"{SERIES_DESCRIPTION_PREFIX} heat map (research use)",
        software_versions=__version__,
        content_qualification="RESEARCH",
    )
    capture.PatientOrientation = source.get("PatientOrientation", "")  # same pixel layout as the film
    capture.Laterality = source.get("Laterality") or ""  # type 2C; dciodvfy asks for it on a capture
    capture.BurnedInAnnotation = "NO"
    capture.ImageComments = f"heat map ({meta.explain.describe()}) of {meta.model_id()}; not for diagnosis"
    return capture


def _algorithm(meta: ModelMeta):
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(
        name=f"pneumoscan {meta.name or meta.model.architecture}",
        version=meta.created,
        parameters=[f"threshold {meta.threshold:.4f} ({meta.threshold_rule})", f"pneumoscan {__version__}"],
        manufacturer=MANUFACTURER,
    )


def _measurements(prediction: Prediction) -> list:
    import highdicom as hd

    values = [(codes.DCM.ThresholdValue, prediction.threshold)]
    if not prediction.refused:
        values.insert(0, (codes.DCM.Probability, prediction.probability))
    return [
        hd.sr.Measurement(name=name, value=float(value), unit=codes.UCUM.NoUnits)
        for name, value in values
        if value is not None
    ]


def _finding(prediction: Prediction, meta: ModelMeta) -> Code:
    if prediction.refused or prediction.label is None:
        return codes.SCT.Indeterminate
    return codes.SCT.Present if prediction.label == meta.class_names[1] else codes.SCT.Absent


def _instance_number(source: Dataset) -> int:
    try:
        return max(1, int(source.get("InstanceNumber") or 1))
    except (TypeError, ValueError):
        return 1
