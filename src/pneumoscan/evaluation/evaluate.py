"""``pneumoscan evaluate``: run a model over a labelled split and measure it.

Images are listed in manifest order and read from the cache in that same order, so every
probability stays attached to its own file and label (the notebook's report was wrong because its
test generator shuffled).  The per-image table is kept in :attr:`Evaluation.predictions`.

The NORMAL/PNEUMONIA metrics measure the films of those two classes only; OTHER films (another
finding) are measured apart, as the fraction called PNEUMONIA (``other`` in the metrics,
:mod:`pneumoscan.evaluation.other`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pneumoscan.atomic import atomic_write_text, output_folder
from pneumoscan.calibration import calibrated
from pneumoscan.classes import binary_films
from pneumoscan.data.boxes_csv import read_boxes_csv
from pneumoscan.data.manifest import evaluation_split, scan_sources
from pneumoscan.errors import DataError
from pneumoscan.evaluation import intervals, plots
from pneumoscan.evaluation.bootstrap import bootstrap_metrics, clusters_of
from pneumoscan.evaluation.groups import bootstrap_description, group_metrics, with_group_columns
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.evaluation.other import other_metrics
from pneumoscan.evaluation.scoring import score_manifest
from pneumoscan.predict import Predictor

if TYPE_CHECKING:
    from pneumoscan.evaluation.localisation import Localisation


@dataclass
class Evaluation:
    """Per-image predictions, the metrics, and the files that could not be read."""

    predictions: pd.DataFrame
    metrics: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    localisation: Localisation | None = None  # with boxes: the heat maps measured against them

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``metrics.json``, ``predictions.csv`` and the plots into ``out_dir``."""
        out = output_folder(out_dir)
        atomic_write_text(
            out / "metrics.json", json.dumps({**self.metrics, "skipped_files": self.skipped}, indent=2)
        )
        atomic_write_text(out / "predictions.csv", self.predictions.to_csv(index=False))
        measured = self.measured()
        labels = measured["label"].to_numpy()
        probs = measured["probability"].to_numpy()
        written = [out / "metrics.json", out / "predictions.csv"]
        if self.localisation is not None:
            atomic_write_text(out / "localisation.csv", self.localisation.films.to_csv(index=False))
            written.append(out / "localisation.csv")
        written.append(plots.class_distribution(self.predictions, out / "class_distribution.png"))
        if not len(labels):
            return written
        written.append(plots.confusion(self.metrics["confusion_matrix"], out / "confusion_matrix.png"))
        if labels.min() != labels.max():
            written.append(plots.roc(labels, probs, self.metrics["threshold"], out / "roc_curve.png"))
        written.append(plots.reliability(labels, probs, out / "reliability.png"))
        return written

    def measured(self) -> pd.DataFrame:
        """The films the NORMAL/PNEUMONIA metrics measure: judged (not refused) films of those classes."""
        table = self.predictions
        refused = table["refused"].to_numpy(dtype=bool) if "refused" in table else np.zeros(len(table), bool)
        return table[~refused & binary_films(table)]


def evaluate(
    predictor: Predictor,
    data: str | Path | Sequence[str | Path],
    split: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    boxes: str | Path | None = None,
) -> Evaluation:
    """Predict every image of ``split`` of ``data`` and compute metrics at the model's threshold.

    ``data``: a data folder or labels CSV, or several (each a site; every site gives its ``split``,
    by default its test split or its only split).  ``boxes``: a boxes CSV
    (:mod:`pneumoscan.data.boxes_csv`) of films of ``data``; the heat maps of the judged PNEUMONIA
    films are then measured against it (:mod:`pneumoscan.evaluation.localisation`), in
    ``localisation`` and ``metrics["localisation"]``.
    """
    scanned = scan_sources(data)
    if boxes is None:
        return evaluate_manifest(
            predictor, evaluation_split(scanned, split), _names(data), cache_dir, progress
        )
    from pneumoscan.evaluation.localisation import localise  # torch: only with boxes
    from pneumoscan.explain import require_torch_engine

    require_torch_engine(predictor)
    box_table = read_boxes_csv(boxes, scanned["path"])
    evaluation = evaluate_manifest(
        predictor, evaluation_split(scanned, split), _names(data), cache_dir, progress
    )
    table = evaluation.predictions
    judged = table[(table["label"] == 1) & ~table["refused"]]
    evaluation.localisation = localise(predictor, list(judged["path"]), box_table, boxes)
    evaluation.metrics["localisation"] = evaluation.localisation.metrics
    return evaluation


def _names(data: str | Path | Sequence[str | Path]) -> str:
    return str(data) if isinstance(data, str | Path) else ", ".join(str(source) for source in data)


def evaluate_manifest(
    predictor: Predictor,
    frame: pd.DataFrame,
    data: str | Path,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Predict the films of a manifest ``frame`` (described as ``data``) and measure them.

    Overall metrics, and per site / view / sex / age band (:mod:`pneumoscan.evaluation.groups`)
    under ``groups``, with patient-bootstrap intervals; the sensitivity and specificity at the
    threshold with Clopper-Pearson intervals under ``operating_point``; films without a ``site``
    column get the name of the ``data`` folder. Films the model's gate refuses (when ``predictor.refuse``) are
    counted (``refused`` in the metrics and a column of the predictions) and left out of the
    metrics, which measure the rest. The headline metrics measure the NORMAL and PNEUMONIA films;
    OTHER films are measured apart (``other``: the fraction called PNEUMONIA).
    """
    scored = score_manifest(predictor, frame, data, cache_dir, progress)
    probabilities = calibrated(scored.logits, predictor.meta.temperature)
    threshold = predictor.threshold
    ood = scored.ood if scored.ood is not None else np.full(len(probabilities), np.nan)
    refused = scored.refused_by(predictor)
    predictions = with_group_columns(scored.rows, Path(data).name).assign(
        probability=probabilities,
        predicted=(probabilities >= threshold).astype(int),
        ood_score=ood,
        refused=refused,
    )
    judged = predictions[~refused]
    if judged.empty:
        raise DataError(
            f"{data}: the model refused all {len(predictions)} images as not chest films it can judge"
        )
    binary = judged[binary_films(judged)]
    labels, judged_probs = binary["label"].to_numpy(), binary["probability"].to_numpy()
    clusters = clusters_of(binary)
    metrics = binary_metrics(labels, judged_probs, threshold)
    metrics["refused"] = int(refused.sum())
    metrics["refused_fraction"] = round(float(refused.mean()), 4)
    metrics["model"] = predictor.meta.model_id()
    metrics["data"] = str(data)
    metrics["split"] = ", ".join(sorted(predictions["split"].astype(str).unique()))
    metrics["bootstrap"] = bootstrap_description(clusters)
    metrics["intervals"] = {
        name: [value.low, value.high]
        for name, value in (
            bootstrap_metrics(labels, judged_probs, threshold, clusters=clusters) if len(binary) else {}
        ).items()
    }
    metrics["groups"] = group_metrics(judged, threshold)
    metrics["other"] = other_metrics(judged)
    metrics["operating_point"] = {
        "method": intervals.METHOD,
        **{
            name: value.as_dict()
            for name, value in intervals.operating_point(labels, judged_probs, threshold).items()
        },
    }
    return Evaluation(predictions, metrics, scored.failures)
