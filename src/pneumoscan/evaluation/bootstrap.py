"""Percentile bootstrap confidence intervals of the headline metrics, resampling patients.

When patient ids are known, a resample draws *patients* with replacement and keeps all of each
drawn patient's films (a cluster bootstrap): films of one patient are not independent, and
resampling them one by one gives intervals that are too narrow.  Without patient ids every film is
its own cluster, which is the ordinary image bootstrap.  All resamples are evaluated at once with
array arithmetic (ROC-AUC as the Mann-Whitney statistic, ties counting one half); they are seeded,
so a result is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS: dict[str, str] = {
    "accuracy": "Accuracy",
    "roc_auc": "ROC-AUC",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1",
}
RESAMPLES = 1000
LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # bootstrap weights held in memory at once


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (``None`` where undefined, e.g. no positives)."""

    estimate: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, float | None]:
        """``{"estimate", "low", "high"}`` for JSON."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def clusters_of(table: pd.DataFrame) -> np.ndarray:
    """Cluster index per film of ``table``: its ``patient_id``, or a cluster of its own without one."""
    if "patient_id" not in table:
        return np.arange(len(table))
    ids = table["patient_id"].astype("string").fillna("").str.strip().to_numpy(dtype=object)
    blank = ids == ""
    ids[blank] = [f"\0film{i}" for i in np.flatnonzero(blank)]  # cannot collide with a real id
    return pd.factorize(ids)[0]


def bootstrap_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    clusters: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Each metric of :data:`METRICS` at ``threshold`` with a percentile bootstrap interval.

    ``clusters`` (an integer per film, e.g. from :func:`clusters_of`) makes a resample draw whole
    clusters; ``None`` resamples films.
    """
    order = np.argsort(probabilities, kind="stable")
    labels, probabilities = sort_by_probability(labels, probabilities)
    n = len(labels)
    codes = np.arange(n) if clusters is None else pd.factorize(np.asarray(clusters)[order])[0]
    groups = int(codes.max()) + 1 if n else 0
    point = metric_values(labels, probabilities, threshold, np.ones((1, n)))[0]
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    draws = np.concatenate(
        [
            metric_values(
                labels,
                probabilities,
                threshold,
                rng.multinomial(groups, np.full(groups, 1 / max(groups, 1)), size=k)[:, codes],
            )
            for k in [min(rows, resamples - start) for start in range(0, resamples, rows)]
        ]
    )
    return {name: _interval(point[i], draws[:, i], level) for i, name in enumerate(METRICS)}


def sort_by_probability(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean labels and float64 probabilities, in ascending order of probability."""
    order = np.argsort(probabilities, kind="stable")
    return np.asarray(labels)[order].astype(bool), np.asarray(probabilities, dtype=np.float64)[order]


def metric_values(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, weights: np.ndarray
) -> np.ndarray:
    """:data:`METRICS` (columns, NaN where undefined) for each row of image ``weights`` ``(B, N)``.

    ``probabilities`` must be sorted ascending and ``labels`` boolean in the same order.
    """
    weights = np.asarray(weights, dtype=np.float64)
    predicted = probabilities >= threshold
    tp, fp = weights @ (labels & predicted), weights @ (~labels & predicted)
    fn, tn = weights @ (labels & ~predicted), weights @ (~labels & ~predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
            "roc_auc": _weighted_auc(labels, probabilities, weights),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "precision": tp / (tp + fp),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }
    return np.stack([columns[name] for name in METRICS], axis=1)


def _weighted_auc(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC-AUC for each row of ``weights``; ``probabilities`` sorted ascending."""
    starts = np.flatnonzero(np.r_[True, np.diff(probabilities) > 0])  # first image of each distinct score
    positives = np.add.reduceat(weights * labels, starts, axis=1)
    negatives = np.add.reduceat(weights * ~labels, starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    with np.errstate(divide="ignore", invalid="ignore"):
        return (positives * (below + 0.5 * negatives)).sum(axis=1) / (
            positives.sum(axis=1) * negatives.sum(axis=1)
        )


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    if not np.isfinite(estimate):
        return Interval(None, None, None)
    finite = draws[np.isfinite(draws)]
    if not finite.size:
        return Interval(float(estimate), None, None)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))
