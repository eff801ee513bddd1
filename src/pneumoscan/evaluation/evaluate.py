"""``pneumoscan evaluate``: run a model over a labelled split and measure it.

Images are listed in manifest order and read from the cache in that same order, so every
probability stays attached to its own file and label (the notebook's report was wrong because its
test generator shuffled).  The per-image table is kept in :attr:`Evaluation.predictions`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscan.atomic import atomic_write_text
from pneumoscan.data.cache import load_cached
from pneumoscan.data.manifest import evaluation_split, scan_sources
from pneumoscan.errors import DataError
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.predict import Predictor


@dataclass
class Evaluation:
    """Per-image predictions, the metrics, and the files that could not be read."""

    predictions: pd.DataFrame
    metrics: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``metrics.json``, ``predictions.csv`` and the plots into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / "metrics.json", json.dumps({**self.metrics, "skipped_files": self.skipped}, indent=2)
        )
        atomic_write_text(out / "predictions.csv", self.predictions.to_csv(index=False))
        labels = self.predictions["label"].to_numpy()
        probs = self.predictions["probability"].to_numpy()
        written = [out / "metrics.json", out / "predictions.csv"]
        written.append(plots.confusion(self.metrics["confusion_matrix"], out / "confusion_matrix.png"))
        written.append(plots.class_distribution(self.predictions, out / "class_distribution.png"))
        if labels.min() != labels.max():
            written.append(plots.roc(labels, probs, self.metrics["threshold"], out / "roc_curve.png"))
        written.append(plots.reliability(labels, probs, out / "reliability.png"))
        return written


def evaluate(
    predictor: Predictor,
    data: str | Path | Sequence[str | Path],
    split: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Predict every image of ``split`` of ``data`` and compute metrics at the model's threshold.

    ``data``: a data folder or labels CSV, or several (each a site; every site gives its ``split``,
    by default its test split or its only split). Images the model's gate refuses (when
    ``predictor.refuse``) are counted (``refused`` in the metrics and a column of the predictions)
    and left out of the metrics, which measure the rest.
    """
    frame = evaluation_split(scan_sources(data), split)
    cached = load_cached(frame["path"].tolist(), predictor.meta.preprocess, cache_dir, progress)
    if not cached.paths:
        raise DataError(f"{_names(data)}: none of the {len(frame)} images could be read")
    rows = frame.set_index("path").loc[cached.paths].reset_index()
    scores = predictor.scores(cached.pixels)
    probabilities, ood = scores[:, 0], scores[:, 1]
    gate = predictor.meta.gate
    refused = (ood > gate.threshold) if gate is not None and predictor.refuse else np.zeros(len(ood), bool)
    predictions = rows.assign(
        probability=probabilities,
        predicted=(probabilities >= predictor.threshold).astype(int),
        ood_score=ood,
        refused=refused,
    )
    judged = predictions[~refused]
    if judged.empty:
        raise DataError(
            f"{_names(data)}: the model refused all {len(rows)} images as not chest films it can judge"
        )
    metrics = binary_metrics(
        judged["label"].to_numpy(), judged["probability"].to_numpy(), predictor.threshold
    )
    metrics["refused"] = int(refused.sum())
    metrics["refused_fraction"] = round(float(refused.mean()), 4)
    metrics["model"] = predictor.meta.model_id()
    metrics["data"] = _names(data)
    metrics["split"] = ", ".join(rows["split"].unique())
    return Evaluation(predictions, metrics, cached.failures)


def _names(data: str | Path | Sequence[str | Path]) -> str:
    return str(data) if isinstance(data, str | Path) else ", ".join(str(source) for source in data)
