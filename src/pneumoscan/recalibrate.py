"""``pneumoscan calibrate``: refit a model's temperature and threshold on a new site's labelled films.

The network is not retrained: its logits on the site's films give a new temperature
(:func:`~pneumoscan.calibration.fit_temperature`) and a new threshold by a rule
(:func:`~pneumoscan.calibration.choose_threshold`).  The new model file -- ``.safetensors`` from a
``.safetensors`` model (torch engine), ``.onnx`` from an exported ``.onnx`` model (onnx engine,
torch-free) -- records what it was calibrated on and the values it replaced, appended to
``calibration_history`` in its metadata.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.calibration import calibrated, choose_threshold, fit_temperature
from pneumoscan.classes import OUTPUT_CLASSES, present_classes, trained_films
from pneumoscan.config import CalibrationConfig
from pneumoscan.data.manifest import content_hashes, scan_sources, select_split
from pneumoscan.errors import DataError, PneumoscanError
from pneumoscan.evaluation.groups import with_group_columns
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.evaluation.scoring import score_manifest
from pneumoscan.model_file import CalibrationRecord, ModelMeta, read_model, save_model
from pneumoscan.model_source import resolve_model
from pneumoscan.predict import Predictor

MIN_FILMS_PER_CLASS = 20
RECORDED_METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity", "ece", "loss")


@dataclass
class Recalibration:
    """The new model file and the record appended to its calibration history."""

    path: Path
    meta: ModelMeta
    record: CalibrationRecord


def calibration_films(frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """The films to calibrate on: the named split, else the only one, else ``val``, else ``train``.

    A ``test`` split is only used when named: films used to calibrate cannot measure the result.
    Ambiguous OTHER films are left out, as in training (OTHER films are negatives).
    """
    chosen = select_split(frame, split, ("val", "train"))
    return chosen[trained_films(chosen, "exclude")].reset_index(drop=True)


def check_counts(frame: pd.DataFrame, what: str) -> None:
    """:class:`DataError` unless ``frame`` has at least :data:`MIN_FILMS_PER_CLASS` films of each class."""
    counts = [int((frame["label"] == label).sum()) for label in (0, 1)]
    if min(counts) < MIN_FILMS_PER_CLASS:
        found = " and ".join(f"{n} {name}" for n, name in zip(counts, OUTPUT_CLASSES, strict=True))
        raise DataError(
            f"{what}: {found} films; calibrating needs labelled films of both classes, at least "
            f"{MIN_FILMS_PER_CLASS} of each (more give a steadier threshold)"
        )


def content_hash(rows: pd.DataFrame) -> str:
    """sha256 over the sorted ``sha1-of-bytes label`` lines of the films: the same films, the same hash."""
    pairs = zip(content_hashes(rows["path"]), rows["label"], strict=True)
    lines = sorted(f"{digest} {label}" for digest, label in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def recalibrate(
    model: str | os.PathLike[str] | None,
    data: str | Path,
    out: str | os.PathLike[str],
    rule: CalibrationConfig | None = None,
    split: str | None = None,
    keep_temperature: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Recalibration:
    """Refit temperature and threshold of ``model`` (``None``: bundled) on ``data``; write ``out``.

    ``rule``: the threshold rule (default: the one the model was trained with).  ``keep_temperature``
    refits the threshold only.
    """
    resolved = resolve_model(model)
    source, target = resolved.path, Path(out)
    if target.suffix.lower() != source.suffix.lower():
        raise PneumoscanError(f"{target}: the new model file must end in {source.suffix} like {source.name}")
    if target.exists() and target.resolve() == source.resolve():
        raise PneumoscanError(f"{target}: is the model being calibrated; choose another --out")
    predictor = Predictor.load(source, resolved.engine)
    meta = predictor.meta
    frame = with_group_columns(calibration_films(scan_sources(data), split), Path(data).name)
    check_counts(frame, f"{data} (split {frame['split'].iloc[0]})")
    scored = score_manifest(predictor, frame, data, cache_dir, progress)
    rows, logits = scored.rows, scored.logits
    check_counts(rows, f"{data}: after skipping {len(scored.failures)} unreadable files")
    labels = rows["label"].to_numpy().astype(int)

    rule = rule or (meta.config.calibration if meta.config else CalibrationConfig())
    temperature = meta.temperature if keep_temperature else fit_temperature(logits, labels)
    threshold, rule_text = choose_threshold(calibrated(logits, temperature), labels, rule, "calibration")
    new_meta = meta.model_copy(
        update={"temperature": temperature, "threshold": threshold, "threshold_rule": rule_text}
    )
    record = CalibrationRecord(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data=[str(data)],
        split=str(rows["split"].iloc[0]),
        sites=sorted(rows["site"].astype(str).unique()),
        films={name: int((rows["class_name"] == name).sum()) for name in present_classes(rows["class_name"])},
        patients=int(rows["patient_id"].nunique()),
        content_hash=content_hash(rows),
        previous=meta.operating_point(),
        new=new_meta.operating_point(),
        metrics_before=_measured(labels, logits, meta),
        metrics_after=_measured(labels, logits, new_meta),
    )
    new_meta = new_meta.model_copy(update={"calibration_history": [*meta.calibration_history, record]})
    return Recalibration(_write(source, target, new_meta), new_meta, record)


def _measured(labels: np.ndarray, logits: np.ndarray, meta: ModelMeta) -> dict[str, float | None]:
    measured = binary_metrics(labels, calibrated(logits, meta.temperature), meta.threshold)
    return {name: measured[name] for name in RECORDED_METRICS}


def _write(source: Path, target: Path, meta: ModelMeta) -> Path:
    if source.suffix.lower() == ".onnx":
        from pneumoscan.export.onnx_export import rewrite_metadata

        return rewrite_metadata(source, target, meta)
    return save_model(target, read_model(source)[1], meta)
