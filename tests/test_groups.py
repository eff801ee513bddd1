"""Per-site and subgroup metrics, and the patient (cluster) bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pneumoscan.cli import main
from pneumoscan.data.manifest import scan_dataset
from pneumoscan.evaluation.bootstrap import bootstrap_metrics, clusters_of
from pneumoscan.evaluation.evaluate import evaluate_manifest
from pneumoscan.evaluation.groups import MIN_FILMS, UNKNOWN, age_band, group_metrics
from pneumoscan.evaluation.report import write_report
from pneumoscan.predict import Predictor


def _width(interval: object) -> float:
    return interval.high - interval.low  # type: ignore[attr-defined]


def _scores(seed: int, n: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probabilities = 1 / (1 + np.exp(-(separation * (2 * labels - 1) + rng.normal(0, 1.5, n))))
    return labels, probabilities


def test_patient_bootstrap_of_duplicated_films_is_wider_than_the_image_bootstrap() -> None:
    labels, probabilities = _scores(0, 120, 1.0)
    copies = 5  # every patient's film appears five times: five films carry one film's information
    labels5, probabilities5 = np.repeat(labels, copies), np.repeat(probabilities, copies)
    patients = np.repeat(np.arange(120), copies)

    by_image = bootstrap_metrics(labels5, probabilities5, 0.5)
    by_patient = bootstrap_metrics(labels5, probabilities5, 0.5, clusters=patients)
    unique = bootstrap_metrics(labels, probabilities, 0.5)
    for name in ("accuracy", "roc_auc", "sensitivity", "specificity"):
        patient, image = by_patient[name], by_image[name]
        assert patient.estimate == pytest.approx(image.estimate)
        assert patient.low <= patient.estimate <= patient.high, name
        assert _width(patient) > 1.5 * _width(image), name  # about sqrt(5) = 2.2 times as wide
        # resampling patients of the duplicated set is resampling films of the unique set
        assert _width(patient) == pytest.approx(_width(unique[name]), rel=0.25), name


def test_one_film_per_patient_is_the_image_bootstrap() -> None:
    labels, probabilities = _scores(1, 80, 1.0)
    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(80)]})
    assert bootstrap_metrics(labels, probabilities, 0.5, clusters=clusters_of(table)) == bootstrap_metrics(
        labels, probabilities, 0.5
    )


def test_clusters_of_treats_missing_ids_as_single_films() -> None:
    table = pd.DataFrame({"patient_id": ["a", "b", "a", "", None, np.nan, " b "]})
    codes = clusters_of(table)
    assert codes[0] == codes[2] and codes[1] == codes[6]
    assert len({codes[3], codes[4], codes[5]} | {codes[0], codes[1]}) == 5
    np.testing.assert_array_equal(clusters_of(pd.DataFrame({"x": [1, 2, 3]})), [0, 1, 2])


def _two_sites() -> pd.DataFrame:
    """Site A: a good model; site B: a coin flip. Two films per patient, with view, sex and age."""
    good_labels, good = _scores(2, 120, 2.5)
    bad_labels, bad = _scores(3, 80, 0.0)
    n = 200
    return pd.DataFrame(
        {
            "label": np.r_[good_labels, bad_labels],
            "probability": np.r_[good, bad],
            "site": ["A"] * 120 + ["B"] * 80,
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "view": ["PA", "AP"] * (n // 2),
            "sex": ["F"] * 100 + ["M"] * 96 + ["", "", np.nan, np.nan],
            "age": [[5, 30, 50, 70, 17, 18, 39, 40][i % 8] for i in range(n - 3)] + ["", "x", 64],
        }
    )


def test_per_site_metrics_on_two_sites() -> None:
    table = _two_sites()
    groups = group_metrics(table, 0.5, resamples=300)
    assert set(groups) == {"site", "view", "sex", "age"}
    assert list(groups["site"]) == ["A", "B"]
    for site, entry in groups["site"].items():
        rows = table[table["site"] == site]
        assert entry["films"] == len(rows) and entry["patients"] == rows["patient_id"].nunique()
        assert entry["NORMAL"] + entry["PNEUMONIA"] == len(rows)
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(rows["label"], rows["probability"]))
        for metric, (low, high) in entry["ci"].items():
            assert low <= entry[metric] <= high, (site, metric)
    assert groups["site"]["A"]["roc_auc"] > 0.85 and groups["site"]["B"]["roc_auc"] < 0.75
    assert groups["site"]["A"]["ci"]["roc_auc"][0] > groups["site"]["B"]["ci"]["roc_auc"][1]
    assert list(groups["sex"]) == ["F", "M", UNKNOWN] and groups["sex"][UNKNOWN]["films"] == 4
    assert list(groups["age"]) == ["0-17", "18-39", "40-64", "65+", UNKNOWN]
    assert groups["age"][UNKNOWN]["films"] == 2


def test_age_bands() -> None:
    assert [age_band(a) for a in (0, 17, 17.9, 18, 39, 40, 64, 65, 101)] == [
        "0-17", "0-17", "0-17", "18-39", "18-39", "40-64", "40-64", "65+", "65+"
    ]  # fmt: skip
    assert {age_band(a) for a in ("", None, np.nan, "abc", -3)} == {UNKNOWN}
    assert age_band("58") == "40-64"


def test_small_and_one_class_groups_give_counts_and_no_auc() -> None:
    labels, probabilities = _scores(4, 40, 1.0)
    table = pd.DataFrame(
        {
            "label": np.r_[labels, [1] * 12],
            "probability": np.r_[probabilities, np.linspace(0.2, 0.9, 12)],
            "site": ["big"] * 37 + ["tiny"] * 3 + ["sick"] * 12,
        }
    )
    groups = group_metrics(table, 0.5, resamples=200)["site"]
    tiny, sick = groups["tiny"], groups["sick"]
    assert (
        tiny["films"] == 3 and tiny["roc_auc"] is None and tiny["ci"] == {} and "fewer than" in tiny["note"]
    )
    assert sick["films"] == MIN_FILMS + 2 and sick["roc_auc"] is None and sick["specificity"] is None
    assert "one class" in sick["note"] and "sensitivity" in sick["ci"] and "roc_auc" not in sick["ci"]
    assert groups["big"]["roc_auc"] is not None


def test_dimensions_without_values_are_left_out() -> None:
    table = _two_sites().assign(view="", sex=np.nan).drop(columns="age")
    assert set(group_metrics(table, 0.5, resamples=50)) == {"site"}


@pytest.fixture(scope="module")
def two_site_manifest(synthetic_data: Path) -> pd.DataFrame:
    """The synthetic test split as a manifest of two sites, with a few subgroup columns."""
    frame = scan_dataset(synthetic_data)
    frame = frame[frame["split"] == "test"].reset_index(drop=True)
    codes = frame["patient_id"].factorize()[0]
    return frame.assign(
        site=np.where(codes % 2, "north", "south"),
        view=np.where(np.arange(len(frame)) % 3, "PA", "AP"),
        sex="",
        age=np.where(codes % 3, 45, 8),
    )


def test_evaluate_reports_groups_everywhere(
    trained_model: Path, two_site_manifest: pd.DataFrame, tmp_path: Path
) -> None:
    predictor = Predictor.load(trained_model)
    evaluation = evaluate_manifest(predictor, two_site_manifest, "two-sites", progress=False)
    metrics = evaluation.metrics
    assert set(metrics["groups"]) == {"site", "view", "age"}
    assert list(metrics["groups"]["site"]) == ["north", "south"]
    assert metrics["bootstrap"]["unit"] == "patient"
    assert metrics["bootstrap"]["clusters"] == two_site_manifest["patient_id"].nunique()
    low, high = metrics["intervals"]["accuracy"]
    assert low <= metrics["accuracy"] <= high

    evaluation.write(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["groups"]["site"]["north"]["films"] == (two_site_manifest["site"] == "north").sum()
    table = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False)
    assert {"site", "view", "sex", "age"} <= set(table.columns)

    text = write_report(evaluation, predictor, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "id='group-site'" in text and "data-group='north'" in text and "data-group='18-39'" not in text
    assert "data-group='40-64'" in text and "patients (all films of a drawn patient)" in text


def test_cli_evaluate_prints_the_site_table(
    trained_model: Path, synthetic_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", str(trained_model), str(synthetic_data), "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "patient-bootstrap intervals" in printed
    site = synthetic_data.name
    assert any(line.split()[:2] == [site, "40"] for line in printed.splitlines())
    assert list(json.loads((out / "metrics.json").read_text())["groups"]["site"]) == [site]
