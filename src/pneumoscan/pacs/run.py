"""``pneumoscan pacs``: predict the chest films of archive studies and file the results into them.

For each instance of a study: earlier pneumoscan results (series description ``pneumoscan ...``) are
passed over; instances whose header the model refuses (:func:`~pneumoscan.data.imageio.dicom_refusals`:
a CT slice, a lateral view...) are reported and skipped without being retrieved; an instance whose SR
(and, with heat maps, SC) from this model is already in the study is reported as done without being
retrieved again; anything else is retrieved (WADO-RS), predicted exactly like ``pneumoscan predict``
predicts the same file, and its results are stored (STOW-RS). A film the model's gate refuses gets an
SR that says it was not judged, and no heat map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

from pneumoscan.data.imageio import dicom_refusals, read_dicom_header_bytes
from pneumoscan.errors import InputRefusedError, PneumoscanError
from pneumoscan.pacs.archive import Archive
from pneumoscan.pacs.results import (
    SERIES_DESCRIPTION_PREFIX,
    check_source,
    heatmap_sc,
    result_sr,
    result_uids,
)
from pneumoscan.predict import Prediction, Predictor
from pneumoscan.preprocess import read_bytes_for_model


@dataclass
class InstanceResult:
    """What happened to one instance of a study; ``prediction`` is None when it was not predicted."""

    study_uid: str
    sop_uid: str
    modality: str
    status: str
    prediction: Prediction | None = None
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for CSV/JSON output (the columns of ``predict`` plus the archive's)."""
        prediction = (self.prediction or Prediction(self.sop_uid)).as_dict()
        prediction.pop("heatmap_path")
        prediction["path"] = f"{self.study_uid}/{self.sop_uid}"
        prediction["error"] = self.error
        return {
            "study_uid": self.study_uid,
            "sop_uid": self.sop_uid,
            "modality": self.modality,
            **prediction,
            "status": self.status,
        }


def process_study(
    archive: Archive, predictor: Predictor, study_uid: str, *, heatmaps: bool = False
) -> Iterator[InstanceResult]:
    """Predict every chest film of one study and store its missing results; one result per instance."""
    instances = archive.instances(study_uid)
    present = {str(item.SOPInstanceUID) for item in instances}
    for instance in instances:
        if str(instance.get("SeriesDescription") or "").startswith(SERIES_DESCRIPTION_PREFIX):
            continue
        yield _process_instance(archive, predictor, instance, present, heatmaps)


def _process_instance(
    archive: Archive, predictor: Predictor, instance: Dataset, present: set[str], heatmaps: bool
) -> InstanceResult:
    study, sop = str(instance.StudyInstanceUID), str(instance.SOPInstanceUID)
    modality = str(instance.get("Modality") or "")
    result = InstanceResult(study, sop, modality, "skipped")
    refusals = dicom_refusals(instance)
    if refusals:
        return _refused(result, InputRefusedError(f"{study}/{sop}", "; ".join(refusals)))
    uids = result_uids(instance, predictor.meta)
    missing = {"SR": uids.sr_instance, **({"SC": uids.sc_instance} if heatmaps else {})}
    missing = {kind: uid for kind, uid in missing.items() if uid not in present}
    if not missing:
        result.status = "already stored"
        return result
    try:
        data = archive.retrieve(instance)
        result.prediction, objects = _predict_instance(predictor, data, f"{study}/{sop}", set(missing))
        if objects:
            archive.store(study, list(objects.values()))
    except InputRefusedError as exc:  # the film's own header refuses it (the archive's search did not)
        return _refused(result, exc)
    except PneumoscanError as exc:
        result.error = str(exc)
        return result
    result.status = "stored " + ", ".join(objects) if objects else "not judged, nothing stored"
    return result


def _refused(result: InstanceResult, exc: InputRefusedError) -> InstanceResult:
    """``result`` for a film its DICOM header refuses: skipped, refused as ``predict`` marks it."""
    result.prediction = Prediction.of_refused_file(f"{result.study_uid}/{result.sop_uid}", exc)
    result.error = str(exc)
    return result


def _predict_instance(
    predictor: Predictor, data: bytes, name: str, kinds: set[str]
) -> tuple[Prediction, dict[str, Dataset]]:
    """The prediction for a retrieved film and its result objects of ``kinds`` ("SR", "SC") by kind.

    A film the model refuses gets no heat map (its SR says it was not judged).
    """
    header = read_dicom_header_bytes(data, name)
    check_source(header, name)
    image = read_bytes_for_model(data, name, predictor.meta.preprocess)
    capture = None
    if "SC" in kinds:
        from pneumoscan.data.imageio import read_image_bytes
        from pneumoscan.explain import explain_image

        full = read_image_bytes(data, name, accept_refused=True)
        explanation = explain_image(predictor, full, name, model_image=image)
        prediction = explanation.prediction
        capture = heatmap_sc(header, explanation.overlay, predictor.meta, name)
    else:
        prediction = predictor.predict_images([image], [name])[0]
    objects = {"SR": result_sr(header, prediction, predictor.meta)} if "SR" in kinds else {}
    if capture is not None and not prediction.refused:
        objects["SC"] = capture
    return prediction, objects
