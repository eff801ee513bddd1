"""Binary classification metrics (scikit-learn) for the model's outputs: labels 0 = NORMAL, 1 = PNEUMONIA
(:data:`pneumoscan.classes.OUTPUT_CLASSES`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, log_loss, roc_auc_score

from pneumoscan.classes import OUTPUT_CLASSES

CLASS_NAMES = list(OUTPUT_CLASSES)


def calibration_bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of P(pneumonia): films in it, their mean probability and their observed
    pneumonia rate (NaN for an empty bin).  The one binning of ECE and the reliability diagram."""
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = np.bincount(which, probabilities, bins) / counts
        observed = np.bincount(which, labels, bins) / counts
    return counts, predicted, observed


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of P(pneumonia) over ``bins`` equal-width probability bins."""
    counts, predicted, observed = calibration_bins(labels, probabilities, bins)
    filled = counts > 0
    return float((counts[filled] / counts.sum() * np.abs(observed[filled] - predicted[filled])).sum())


# Fewest films for a ROC-AUC (and the groups' bootstrap intervals); fewer give a number that means little
MIN_FILMS = 10


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """Loss, accuracy, ROC-AUC, sensitivity, specificity, ECE, confusion matrix and per-class report
    (without films: ``images`` 0, every value None and an empty report).

    ROC-AUC is None for one class or fewer than :data:`MIN_FILMS` films.
    """
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not len(labels):
        return {
            "images": 0,
            "threshold": float(threshold),
            **dict.fromkeys(("loss", "accuracy", "roc_auc", "sensitivity", "specificity", "ece")),
            "confusion_matrix": {"tn": 0, "fp": 0, "fn": 0, "tp": 0},
            "report": {},
        }
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = len(np.unique(labels)) == 2 and len(labels) >= MIN_FILMS
    report = classification_report(
        labels, predicted, labels=[0, 1], target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )
    return {
        "images": len(labels),
        "threshold": float(threshold),
        "loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float((predicted == labels).mean()),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else None,
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "ece": expected_calibration_error(labels, probabilities),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "report": report,
    }


def format_report(metrics: dict[str, Any]) -> str:
    """The terminal summary: headline metrics, confusion matrix and classification report."""
    cm = metrics["confusion_matrix"]

    def num(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    refused = metrics.get("refused")
    if not metrics["images"]:
        return f"no {' or '.join(CLASS_NAMES)} films: no {'/'.join(CLASS_NAMES)} metrics" + (
            f" ({refused} images refused as out of distribution)" if refused else ""
        )
    lines = [
        f"images {metrics['images']}  threshold {metrics['threshold']:.3f}"
        + (f"  (measured after {refused} images refused as out of distribution)" if refused else ""),
        f"accuracy {num('accuracy')}  ROC-AUC {num('roc_auc')}  loss {num('loss')}  ECE {num('ece')}",
        f"sensitivity {num('sensitivity')}  specificity {num('specificity')}",
        "",
        "confusion matrix (rows: true, columns: predicted)",
        f"{'':>12}{CLASS_NAMES[0]:>11}{CLASS_NAMES[1]:>11}",
        f"{CLASS_NAMES[0]:>12}{cm['tn']:>11}{cm['fp']:>11}",
        f"{CLASS_NAMES[1]:>12}{cm['fn']:>11}{cm['tp']:>11}",
        "",
        f"{'':>14}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}",
    ]
    for name in [*CLASS_NAMES, "macro avg", "weighted avg"]:
        row = metrics["report"][name]
        lines.append(
            f"{name:>14}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1-score']:>10.3f}{row['support']:>10.0f}"
        )
    return "\n".join(lines)
