"""The plots say what they show: titles, AUC, readable legends, whole epochs, honest reliability bins."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pneumoscan.cli import main, report_path
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.metrics import calibration_bins, expected_calibration_error


def scores(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, np.clip(0.7 * labels + rng.normal(0.15, 0.2, n), 0, 1)


def test_confusion_and_roc_have_titles_and_the_auc() -> None:
    labels, probabilities = scores()
    assert (
        plots.confusion_figure({"tn": 5, "fp": 1, "fn": 2, "tp": 7}).axes[0].get_title() == "Confusion matrix"
    )
    ax = plots.roc_figure(labels, probabilities, 0.5).axes[0]
    assert ax.get_title() == "ROC curve"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0] == f"ROC, AUC {roc_auc_score(labels, probabilities):.3f}"
    plt.close("all")


def test_class_distribution_legend_has_no_column_title_and_covers_no_bar() -> None:
    manifest = pd.DataFrame(
        {
            "split": ["train"] * 300 + ["val"] * 40 + ["test"] * 60,
            "class_name": ["NORMAL"] * 80 + ["PNEUMONIA"] * 250 + ["NORMAL"] * 40 + ["PNEUMONIA"] * 30,
        }
    )
    fig = plots.class_distribution_figure(manifest)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend.get_title().get_text() == ""
    box = legend.get_window_extent()
    bars = [patch.get_window_extent() for container in ax.containers for patch in container]
    assert len(bars) == 6 and not any(box.overlaps(bar) for bar in bars)
    expected = sorted(manifest.groupby(["split", "class_name"]).size())
    assert sorted(int(t.get_text()) for t in ax.texts) == expected  # counts on the bars
    plt.close(fig)


def test_learning_curves_of_a_short_run_tick_whole_epochs() -> None:
    history = pd.DataFrame(
        {"epoch": [0, 1], "train_loss": [0.6, 0.4], "val_loss": [0.5, 0.45], "val_acc": [0.7, 0.75]}
    )
    fig = plots.learning_curves_figure(history)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_reliability_marks_sparse_bins_and_shows_counts() -> None:
    labels, probabilities = scores(60)
    counts, predicted, _ = calibration_bins(labels, probabilities)
    assert (
        counts.sum() == 60 and (counts < plots.MIN_BIN_FILMS).any() and (counts >= plots.MIN_BIN_FILMS).any()
    )
    fig = plots.reliability_figure(labels, probabilities)
    main_ax, below = fig.axes
    lines = {line.get_label(): line for line in main_ax.get_lines()}
    model = lines[f"model (bins of {plots.MIN_BIN_FILMS}+ films)"]
    sparse = lines[f"bins of under {plots.MIN_BIN_FILMS} films"]
    solid = counts >= plots.MIN_BIN_FILMS
    assert np.allclose(model.get_xdata(), predicted[solid])  # the line joins only well-filled bins
    assert len(sparse.get_xdata()) == int(((counts > 0) & ~solid).sum()) and sparse.get_linestyle() == "None"
    assert [int(t.get_text()) for t in below.texts if t.get_text()] == [int(c) for c in counts if c]
    plt.close(fig)


def test_ece_is_the_binned_gap() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([0.05, 0.15, 0.85, 0.95])  # bins 0, 1, 8, 9; each gap 0.05, 0.15, 0.15, 0.05
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.1)


def test_report_path_rule() -> None:
    assert report_path("report.html", "runs/x/test") == Path("runs/x/test/report.html")
    assert report_path("elsewhere/r.html", "runs/x/test") == Path("elsewhere/r.html")
    assert report_path("./r.html", "runs/x/test") == Path("r.html")
    assert report_path("report.html", None) == Path("report.html")


def test_evaluate_report_without_a_folder_goes_into_out(
    trained_model: Path, synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval"
    assert (
        main(["evaluate", str(trained_model), str(synthetic_data), "--out", str(out), "--quiet", "--report"])
        == 0
    )
    assert (out / "report.html").is_file() and not (tmp_path / "report.html").exists()
