"""``predict --dicom-out DIR``: the SR (and heat-map SC) of each DICOM film written as files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from pneumoscan.atomic import atomic_path
from pneumoscan.data.imageio import dicom_refusals, read_dicom_header
from pneumoscan.errors import ImageReadError, PneumoscanError
from pneumoscan.pacs.results import check_source, heatmap_sc, result_sr
from pneumoscan.predict import Prediction, Predictor


def write_dicom_results(
    predictor: Predictor, predictions: Sequence[Prediction], out_dir: str | Path, *, heatmaps: bool = False
) -> tuple[list[Path], list[str]]:
    """Write ``OUT_DIR/<SOPInstanceUID>.dcm`` for each predicted DICOM film; return the files and skips.

    Films that are not DICOM files, lack the study UIDs a result needs or were refused by their
    header (a CT slice...) are skipped with a one-line message; predictions with an error are passed
    over (they were reported already). With ``heatmaps``, films the model refused get no heat map.
    """
    out = Path(out_dir)
    written: list[Path] = []
    skipped: list[str] = []
    for prediction in predictions:
        if prediction.error:
            continue
        try:
            header = _read_header(prediction.path)
            objects = [result_sr(header, prediction, predictor.meta)]
            if heatmaps and not prediction.refused:
                from pneumoscan.explain import explain_file

                overlay = explain_file(predictor, prediction.path).overlay
                objects.append(heatmap_sc(header, overlay, predictor.meta, prediction.path))
        except PneumoscanError as exc:
            skipped.append(str(exc))
            continue
        written.extend(_save(dataset, out) for dataset in objects)
    return written, skipped


def _read_header(path: str) -> Dataset:
    try:
        header = read_dicom_header(path)
    except ImageReadError as exc:
        raise PneumoscanError(f"{exc}; no DICOM result written for it") from None
    check_source(header, path)
    refusals = dicom_refusals(header)
    if refusals:
        raise PneumoscanError(f"{path}: refused ({'; '.join(refusals)}); no DICOM result written for it")
    return header


def _save(dataset: Dataset, out: Path) -> Path:
    target = out / f"{dataset.SOPInstanceUID}.dcm"
    with atomic_path(target) as tmp:  # a full disk: one line naming the file (pydicom adds a traceback)
        dataset.save_as(tmp, enforce_file_format=True)
    return target
