"""The self-contained HTML evaluation report and its bootstrap confidence intervals."""

from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score, precision_score, roc_auc_score

from pneumoscan.cli import main
from pneumoscan.errors import PneumoscanError
from pneumoscan.evaluation.bootstrap import METRICS, bootstrap_metrics
from pneumoscan.evaluation.evaluate import Evaluation, evaluate
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.evaluation.report import write_report
from pneumoscan.predict import Predictor

PNG_URI = "data:image/png;base64,"


class Page(HTMLParser):
    """Every src/href value and the rows (attributes, cell texts) of each table with an id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, list[tuple[dict[str, str | None], list[str]]]] = {}
        self._table: str | None = None
        self._cells: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value or "" for key, value in attrs if key in ("src", "href")]
        if tag == "table":
            self._table = dict(attrs).get("id")
        elif tag == "tr" and self._table:
            self._cells = []
            self.tables.setdefault(self._table, []).append((dict(attrs), self._cells))
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table, self._cells = None, None

    def handle_data(self, data: str) -> None:
        if self._cells:
            self._cells[-1] += data

    def png_images(self) -> list[Image.Image]:
        assert all(link.startswith(PNG_URI) for link in self.links), "every src/href is an inline PNG"
        images = [Image.open(io.BytesIO(base64.b64decode(link[len(PNG_URI) :]))) for link in self.links]
        assert all(image.format == "PNG" for image in images)
        return images


@pytest.fixture(scope="module")
def evaluated(trained_model: Path, synthetic_data: Path) -> tuple[Predictor, Evaluation]:
    predictor = Predictor.load(trained_model)
    return predictor, evaluate(predictor, synthetic_data, "test", progress=False)


def test_report_is_self_contained_with_intervals(
    evaluated: tuple[Predictor, Evaluation], tmp_path: Path
) -> None:
    predictor, evaluation = evaluated
    text = write_report(evaluation, predictor, tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)

    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert len(page.png_images()) >= 4  # confusion matrix, ROC, precision-recall, reliability
    assert "ECE" in text and predictor.meta.model_id() in text

    metrics = {attrs["data-metric"]: cells for attrs, cells in page.tables["metrics"][1:]}
    assert list(metrics) == list(METRICS)
    for name, (_, value, interval) in metrics.items():
        low, high = (float(x) for x in interval.split("–"))
        assert low <= float(value) <= high, name
    assert float(metrics["accuracy"][1]) == pytest.approx(evaluation.metrics["accuracy"], abs=5e-4)

    marked = [cells for attrs, cells in page.tables["thresholds"] if attrs.get("class") == "model-threshold"]
    assert len(marked) == 1 and marked[0][0] == f"{predictor.threshold:.3f} (model)"
    assert len(page.tables["thresholds"]) >= 10  # header, 0.1 ... 0.9 and the model's own


def test_gallery_shows_heat_maps_and_escapes_names(
    evaluated: tuple[Predictor, Evaluation], synthetic_data: Path, tmp_path: Path
) -> None:
    predictor, _ = evaluated
    odd = tmp_path / "<img src=x onerror=alert(1)>&.jpeg"
    shutil.copy(next((synthetic_data / "test" / "PNEUMONIA").iterdir()), odd)
    normal = next((synthetic_data / "test" / "NORMAL").iterdir())
    paths = [str(odd), str(normal)]
    probabilities = np.array([r.probability for r in predictor.predict_files(paths)])
    labels = np.array([0, 1])  # deliberately the wrong truth: both become the worst errors
    table = pd.DataFrame(
        {"path": paths, "label": labels, "class_name": ["NORMAL", "PNEUMONIA"], "probability": probabilities}
    ).assign(predicted=(probabilities >= predictor.threshold).astype(int))
    metrics = {
        **binary_metrics(labels, probabilities, predictor.threshold),
        "model": "m",
        "data": "<data>",
        "split": "test",
    }
    text = write_report(Evaluation(table, metrics), predictor, tmp_path / "r.html").read_text(
        encoding="utf-8"
    )

    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;&amp;.jpeg" in text
    assert "&lt;data&gt;" in text
    page = Page(text)
    overlays = [image for image in page.png_images() if image.mode == "RGB"]  # plots are RGBA (matplotlib)
    assert len(overlays) == 2  # one heat-map overlay per error


def test_bootstrap_intervals_are_exact_and_seeded() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.6).astype(int)
    probabilities = np.clip(0.35 * labels + 0.65 * rng.random(600), 0, 1).round(2)  # with ties
    intervals = bootstrap_metrics(labels, probabilities, 0.5)
    predicted = probabilities >= 0.5
    expected = {
        "roc_auc": roc_auc_score(labels, probabilities),
        "f1": f1_score(labels, predicted),
        "precision": precision_score(labels, predicted),
        "accuracy": np.mean(predicted == labels),
    }
    for name, value in expected.items():
        assert intervals[name].estimate == pytest.approx(value)
    for value in intervals.values():
        assert value.low is not None and value.high is not None and value.estimate is not None
        assert value.low <= value.estimate <= value.high and value.high - value.low < 0.15
    assert bootstrap_metrics(labels, probabilities, 0.5) == intervals
    one_class = bootstrap_metrics(np.zeros(5), np.linspace(0, 1, 5), 0.5)
    assert one_class["roc_auc"].estimate is None and one_class["sensitivity"].estimate is None


def test_unwritable_report_is_a_user_error(
    evaluated: tuple[Predictor, Evaluation], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor, evaluation = evaluated
    with pytest.raises(PneumoscanError, match="is a folder"):
        write_report(evaluation, predictor, tmp_path)
    monkeypatch.setattr("pneumoscan.evaluation.report._page", lambda *_: "")  # skip the rendering
    (tmp_path / "file").write_text("")
    with pytest.raises(PneumoscanError, match=r"file/report\.html: cannot write .*a file is in the way"):
        write_report(evaluation, predictor, tmp_path / "file" / "report.html")


def test_cli_evaluate_report(trained_model: Path, synthetic_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "report.html"
    argv = ["evaluate", str(trained_model), str(synthetic_data), "--split", "test", "--report", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
