"""PNG plots of data, training and evaluation (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from pneumoscan.atomic import atomic_path
from pneumoscan.data.imageio import read_image
from pneumoscan.errors import ImageReadError


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
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
    return _save(fig, path)


def roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
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
    return _save(fig, path)


def reliability(labels: np.ndarray, probabilities: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Reliability diagram: observed pneumonia rate against predicted probability."""
    observed, predicted = calibration_curve(labels, probabilities, n_bins=bins, strategy="uniform")
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed pneumonia rate")
    ax.legend(loc="upper left")
    return _save(fig, path)
