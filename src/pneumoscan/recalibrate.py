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
from scipy.stats import mannwhitneyu

from pneumoscan.calibration import (
    TEMPERATURE_RANGE,
    ThresholdChoice,
    calibrated,
    choose_threshold,
    fit_temperature,
)
from pneumoscan.classes import OUTPUT_CLASSES, present_classes, trained_films
from pneumoscan.config import CalibrationConfig
from pneumoscan.data.manifest import content_hashes, scan_sources, select_split
from pneumoscan.errors import DataError, PneumoscanError
from pneumoscan.evaluation.groups import with_group_columns
from pneumoscan.evaluation.intervals import Proportion, operating_point
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.evaluation.scoring import score_manifest
from pneumoscan.model_file import CalibrationRecord, ModelMeta, read_model, save_model
from pneumoscan.model_source import resolve_model
from pneumoscan.predict import Predictor

MIN_FILMS_PER_CLASS = 20
RECORDED_METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity", "ece", "loss")
NO_SIGNAL_P = 0.05  # refuse films whose scores do not rank PNEUMONIA above NORMAL at this level


@dataclass(frozen=True)
class OperatingFit:
    """What ``calibrate`` fits on films: the temperature, the threshold chosen by a rule, and the
    sensitivity and specificity at that threshold on those same films (Clopper-Pearson intervals)."""

    temperature: float
    choice: ThresholdChoice
    point: dict[str, Proportion]


@dataclass
class Recalibration:
    """The new model file (None when refused), the record appended to its calibration history, the
    fit, and what was wrong with the films: ``problems`` refuse the calibration unless forced,
    ``warnings`` are said either way."""

    path: Path | None
    meta: ModelMeta
    record: CalibrationRecord
    fit: OperatingFit
    problems: list[str]
    warnings: list[str]


class CalibrationRefused(DataError):
    """The films cannot support the calibration asked for; ``result`` holds what it would have been."""

    def __init__(self, message: str, result: Recalibration) -> None:
        super().__init__(message)
        self.result = result


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


def fit_operating_point(
    logits: np.ndarray, labels: np.ndarray, rule: CalibrationConfig, temperature: float | None = None
) -> OperatingFit:
    """Temperature (refitted unless ``temperature`` is given) and threshold by ``rule`` on these films."""
    if temperature is None:
        temperature = fit_temperature(logits, labels)
    probabilities = calibrated(logits, temperature)
    choice = choose_threshold(probabilities, labels, rule, "calibration")
    return OperatingFit(temperature, choice, operating_point(labels, probabilities, choice.threshold))


def signal_problem(logits: np.ndarray, labels: np.ndarray) -> str | None:
    """Why ``logits`` carry no signal about ``labels`` (None when they do): no evidence at the 5 %
    level (one-sided Mann-Whitney test) that PNEUMONIA films score above NORMAL ones."""
    positives, negatives = logits[labels == 1], logits[labels == 0]
    test = mannwhitneyu(positives, negatives, alternative="greater")
    if test.pvalue < NO_SIGNAL_P:
        return None
    auc = test.statistic / (positives.size * negatives.size)
    return (
        f"the model's scores do not separate NORMAL from PNEUMONIA on these films (ROC-AUC {auc:.2f}, "
        f"one-sided Mann-Whitney p = {test.pvalue:.2g}): they carry no signal to calibrate on; check "
        "the labels and that the films are chest X-rays like the site's"
    )


def recalibrate(
    model: str | os.PathLike[str] | None,
    data: str | Path,
    out: str | os.PathLike[str],
    rule: CalibrationConfig | None = None,
    split: str | None = None,
    keep_temperature: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
) -> Recalibration:
    """Refit temperature and threshold of ``model`` (``None``: bundled) on ``data``; write ``out``.

    ``rule``: the threshold rule (default: the one the model was trained with).  ``keep_temperature``
    refits the threshold only.  Films the model's gate refuses are left out (as ``evaluate`` leaves
    them out).  :class:`CalibrationRefused` when the films carry no signal or cannot support the
    rule's target, unless ``force``.
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
    refused = scored.refused_by(predictor)
    rows, logits = scored.rows[~refused].reset_index(drop=True), scored.logits[~refused]
    left_out = [
        *([f"{len(scored.failures)} unreadable files"] if scored.failures else []),
        *(
            [f"{int(refused.sum())} films the model's gate refuses as not chest films"]
            if refused.any()
            else []
        ),
    ]
    check_counts(rows, f"{data}: after leaving out {' and '.join(left_out)}" if left_out else str(data))
    labels = rows["label"].to_numpy().astype(int)

    rule = rule or (meta.config.calibration if meta.config else CalibrationConfig())
    fit = fit_operating_point(logits, labels, rule, meta.temperature if keep_temperature else None)
    new_meta = meta.model_copy(
        update={
            "temperature": fit.temperature,
            "threshold": fit.choice.threshold,
            "threshold_rule": fit.choice.rule,
        }
    )
    problems = [
        problem
        for problem in (
            signal_problem(logits, labels),
            None if fit.choice.target is None or fit.choice.target.reached else fit.choice.target.shortfall(),
        )
        if problem
    ]
    warnings = [f"left out {item}" for item in left_out]
    if fit.temperature >= 0.99 * TEMPERATURE_RANGE[1]:  # the bounded search stops just short of it
        warnings.append(
            f"the fitted temperature {fit.temperature:.2f} reached its upper bound {TEMPERATURE_RANGE[1]:g}: "
            "a degenerate fit, "
            "every probability will be close to 0.5"
        )
    target_result = fit.choice.target
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
        rule=rule.threshold_rule,
        target=None if target_result is None else target_result.target,
        confidence=None if target_result is None else target_result.confidence,
        counts=_counts(fit.point),
        bound=None if target_result is None else target_result.bound,
        refused=int(refused.sum()),
        forced=bool(problems),
    )
    new_meta = new_meta.model_copy(update={"calibration_history": [*meta.calibration_history, record]})
    result = Recalibration(None, new_meta, record, fit, problems, warnings)
    if problems and not force:
        raise CalibrationRefused(f"{data}: {'; '.join(problems)} (--force writes the model anyway)", result)
    result.path = _write(source, target, new_meta)
    return result


def _counts(point: dict[str, Proportion]) -> dict[str, int]:
    """Confusion counts at the threshold from its sensitivity and specificity."""
    counts: dict[str, int] = {}
    if "sensitivity" in point:
        sensitivity = point["sensitivity"]
        counts.update(tp=sensitivity.k, fn=sensitivity.n - sensitivity.k)
    if "specificity" in point:
        specificity = point["specificity"]
        counts.update(tn=specificity.k, fp=specificity.n - specificity.k)
    return counts


def _measured(labels: np.ndarray, logits: np.ndarray, meta: ModelMeta) -> dict[str, float | None]:
    measured = binary_metrics(labels, calibrated(logits, meta.temperature), meta.threshold)
    return {name: measured[name] for name in RECORDED_METRICS}


def _write(source: Path, target: Path, meta: ModelMeta) -> Path:
    if source.suffix.lower() == ".onnx":
        from pneumoscan.export.onnx_export import rewrite_metadata

        return rewrite_metadata(source, target, meta)
    return save_model(target, read_model(source)[1], meta)
