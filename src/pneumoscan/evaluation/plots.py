"""PNG plots of data, training and evaluation (matplotlib, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from pneumoscan.atomic import atomic_write_bytes
from pneumoscan.data.imageio import read_image
from pneumoscan.errors import ImageReadError


def figure_png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes in memory and close it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _save(fig: Figure, path: Path) -> Path:
    atomic_write_bytes(path, figure_png_bytes(fig))
    return path


def class_distribution(manifest: pd.DataFrame, path: Path) -> Path:
    """Bar chart of images per class in each split."""
    counts = manifest.groupby(["split", "class_name"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(6, 4))
    counts.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("images")
    ax.set_title("Class distribution per split")
    return _save(fig, path)


def sample_grid(manifest: pd.DataFrame, path: Path, per_class: int = 4, seed: int = 0) -> Path:
    """A few random images of each class."""
    fig, axes = plt.subplots(2, per_class, figsize=(2.2 * per_class, 4.8), squeeze=False)
    for row, (name, group) in enumerate(manifest.groupby("class_name")):
        picks = group.sample(min(per_class, len(group)), random_state=seed)["path"].tolist()
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(picks):
                try:
                    ax.imshow(read_image(picks[col]).pixels, cmap="gray", vmin=0, vmax=1)
                except ImageReadError:
                    continue
                ax.set_title(str(name), fontsize=9)
    return _save(fig, path)


def learning_curves(history: pd.DataFrame, path: Path) -> Path:
    """Training and validation loss and accuracy per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            column = f"{split}_{metric}"
            if column in history:
                rows = history.dropna(subset=[column])
                ax.plot(rows["epoch"] + 1, rows[column], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.legend()
    return _save(fig, path)


def confusion(cm: dict[str, int], path: Path) -> Path:
    """Write :func:`confusion_figure` as a PNG to ``path``."""
    return _save(confusion_figure(cm), path)


def confusion_figure(cm: dict[str, int]) -> Figure:
    """Confusion matrix heat map with counts."""
    matrix = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    names = ["NORMAL", "PNEUMONIA"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black"
        )
    return fig


def roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
    """Write :func:`roc_figure` as a PNG to ``path``."""
    return _save(roc_figure(labels, probabilities, threshold), path)


def roc_figure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> Figure:
    """ROC curve with the operating threshold marked."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(fpr, tpr, label="ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    at = int(np.argmin(np.abs(thresholds - threshold)))
    ax.plot(fpr[at], tpr[at], "o", color="red", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right")
    return fig


def precision_recall_figure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> Figure:
    """Precision-recall curve with the operating threshold marked and the prevalence as baseline."""
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(recall, precision, label="precision-recall")
    ax.axhline(float(np.mean(labels)), linestyle="--", color="grey", label="prevalence")
    at = int(np.argmin(np.abs(thresholds - threshold)))
    ax.plot(recall[at], precision[at], "o", color="red", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    return fig


def reliability(labels: np.ndarray, probabilities: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Write :func:`reliability_figure` as a PNG to ``path``."""
    return _save(reliability_figure(labels, probabilities, bins), path)


def reliability_figure(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> Figure:
    """Reliability diagram: observed pneumonia rate against predicted probability."""
    observed, predicted = calibration_curve(labels, probabilities, n_bins=bins, strategy="uniform")
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed pneumonia rate")
    ax.legend(loc="upper left")
    return fig
