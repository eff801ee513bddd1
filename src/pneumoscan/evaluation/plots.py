"""PNG plots of data, training and evaluation (matplotlib, no display needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

if "inline" not in os.environ.get("MPLBACKEND", ""):  # a Jupyter kernel keeps its inline backend
    matplotlib.use("Agg")  # figures are only rendered to PNG: no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from pneumoscan.atomic import atomic_write_bytes
from pneumoscan.classes import OUTPUT_CLASSES, present_classes
from pneumoscan.data.imageio import read_image
from pneumoscan.errors import ImageReadError
from pneumoscan.evaluation.metrics import calibration_bins

MIN_BIN_FILMS = 10  # a reliability bin with fewer films is marked as too noisy to read


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
    """Write :func:`class_distribution_figure` as a PNG to ``path``."""
    return _save(class_distribution_figure(manifest), path)


def class_distribution_figure(manifest: pd.DataFrame) -> Figure:
    """Bar chart of images per class in each split, counts on the bars, the legend beside the axes."""
    counts = manifest.groupby(["split", "class_name"]).size().unstack(fill_value=0)
    counts = counts[list(present_classes(list(counts.columns)))]  # in class-set order
    counts.columns.name = None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    counts.plot.bar(ax=ax, rot=0)
    for bars in ax.containers:
        if isinstance(bars, BarContainer):
            ax.bar_label(bars, fontsize=8)
    ax.set_ylim(0, max(1, int(counts.to_numpy().max())) * 1.12)
    ax.set_ylabel("images")
    ax.set_title("Class distribution per split")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def sample_grid(manifest: pd.DataFrame, path: Path, per_class: int = 4, seed: int = 0) -> Path:
    """Write :func:`sample_grid_figure` as a PNG to ``path``."""
    return _save(sample_grid_figure(manifest, per_class, seed), path)


def sample_grid_figure(manifest: pd.DataFrame, per_class: int = 4, seed: int = 0) -> Figure:
    """A few random images of each film class (one row each, in class-set order)."""
    groups = dict(list(manifest.groupby("class_name")))
    names = present_classes(list(groups))
    rows = max(1, len(names))
    fig, axes = plt.subplots(rows, per_class, figsize=(2.2 * per_class, 2.4 * rows), squeeze=False)
    for row, name in enumerate(names):
        group = groups[name]
        picks = group.sample(min(per_class, len(group)), random_state=seed)["path"].tolist()
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(picks):
                try:
                    ax.imshow(read_image(picks[col]).pixels, cmap="gray", vmin=0, vmax=1)
                except ImageReadError:
                    continue
                ax.set_title(str(name), fontsize=9)
    return fig


def learning_curves(history: pd.DataFrame, path: Path) -> Path:
    """Write :func:`learning_curves_figure` as a PNG to ``path``."""
    return _save(learning_curves_figure(history), path)


def learning_curves_figure(history: pd.DataFrame) -> Figure:
    """Training and validation loss and accuracy per epoch (whole-number epoch ticks)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            column = f"{split}_{metric}"
            if column in history:
                rows = history.dropna(subset=[column])
                ax.plot(rows["epoch"] + 1, rows[column], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.legend()
    return fig


def confusion(cm: dict[str, int], path: Path) -> Path:
    """Write :func:`confusion_figure` as a PNG to ``path``."""
    return _save(confusion_figure(cm), path)


def confusion_figure(cm: dict[str, int]) -> Figure:
    """Confusion matrix heat map with counts."""
    matrix = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks([0, 1], OUTPUT_CLASSES)
    ax.set_yticks([0, 1], OUTPUT_CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black"
        )
    return fig


def roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
    """Write :func:`roc_figure` as a PNG to ``path``."""
    return _save(roc_figure(labels, probabilities, threshold), path)


def roc_figure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> Figure:
    """ROC curve, its AUC in the legend, with the operating threshold marked."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(fpr, tpr, label=f"ROC, AUC {auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    at = int(np.argmin(np.abs(thresholds - threshold)))
    ax.plot(fpr[at], tpr[at], "o", color="red", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC curve")
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


def reliability_figure(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10, min_films: int = MIN_BIN_FILMS
) -> Figure:
    """Reliability diagram: observed pneumonia rate against predicted probability, films per bin below.

    Bins with fewer than ``min_films`` films are shown as hollow grey points, not joined to the
    line: their observed rate is too noisy to read (a bin of 2 films can only say 0, 0.5 or 1).
    """
    counts, predicted, observed = calibration_bins(labels, probabilities, bins)
    fig, (ax, below) = plt.subplots(
        2, 1, figsize=(4.5, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    solid = counts >= min_films
    ax.plot(predicted[solid], observed[solid], marker="o", label=f"model (bins of {min_films}+ films)")
    sparse = (counts > 0) & ~solid
    if sparse.any():
        ax.plot(
            predicted[sparse],
            observed[sparse],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            color="grey",
            label=f"bins of under {min_films} films",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("observed pneumonia rate")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bars = below.bar(edges[:-1], counts, width=1.0 / bins, align="edge", color="#9db8d9", edgecolor="white")
    below.bar_label(bars, fontsize=7)
    below.set_ylim(0, max(1, int(counts.max())) * 1.35)
    below.set_ylabel("films")
    below.set_xlabel("predicted probability")
    return fig
