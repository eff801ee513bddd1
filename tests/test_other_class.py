"""OTHER films (another finding, not pneumonia): data, training, evaluation and the class set."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from PIL import Image
from test_pipeline import assert_one_error_line, run_cli

from pneumoscan.classes import FILM_CLASS_NAMES, OUTPUT_CLASSES, film_class, target_of
from pneumoscan.config import Config
from pneumoscan.data.datamodule import XrayDataModule, sampling_weights
from pneumoscan.data.inspect import inspect_dataset
from pneumoscan.data.manifest import evaluation_split, patient_split, scan_dataset, scan_sources
from pneumoscan.errors import DataError
from pneumoscan.evaluation.evaluate import evaluate_manifest
from pneumoscan.evaluation.other import wilson_interval
from pneumoscan.model_file import read_meta
from pneumoscan.predict import Predictor
from pneumoscan.synthetic import make_synthetic_csv_site, make_synthetic_dataset, synthetic_film


def _film(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_film(np.random.default_rng(seed), False, 32)).save(path)
    return path


# --- the class set and the data -----------------------------------------------------------------------


def test_the_class_set() -> None:
    assert FILM_CLASS_NAMES == ("NORMAL", "PNEUMONIA", "OTHER")
    assert OUTPUT_CLASSES == ("NORMAL", "PNEUMONIA")
    assert [target_of(name) for name in FILM_CLASS_NAMES] == [0, 1, 0]  # OTHER is a negative
    assert film_class(" other ").name == "OTHER" and film_class("1").name == "PNEUMONIA"
    assert film_class("2") is None  # OTHER has no integer code


@pytest.mark.parametrize("split", [None, "train"])
def test_other_folders_in_both_layouts_any_case(tmp_path: Path, split: str | None) -> None:
    root = tmp_path / "site"
    base = root / split if split else root
    _film(base / "NORMAL" / "IM-0001-0001.png")
    _film(base / "PNEUMONIA" / "person2_virus_1.png")
    _film(base / "OTHER" / "IM-0003-0001.png")
    _film(base / "other" / "IM-0004-0001.png")
    frame = scan_dataset(root)
    other = frame[frame["class_name"] == "OTHER"]
    assert len(other) == 2 and set(other["label"]) == {0} and not frame["ambiguous"].any()
    assert set(frame["split"]) == {split or "site"}
    only_other = tmp_path / "only"
    _film(only_other / "OTHER" / "IM-0005-0001.png")
    assert scan_dataset(only_other)["class_name"].tolist() == ["OTHER"]


def _csv(tmp_path: Path, rows: list[str], header: str = "file,label,opacity") -> Path:
    for row in rows:
        _film(tmp_path / row.split(",")[0])
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_labels_csv_other_and_opacity(tmp_path: Path) -> None:
    csv = _csv(
        tmp_path, ["a.png,NORMAL,", "b.png,pneumonia,1", "c.png,other,0", "d.png, OTHER ,1", "e.png,1,"]
    )
    frame = scan_sources([csv]).set_index(scan_sources([csv])["path"].map(lambda p: Path(p).name))
    assert frame["class_name"].to_dict() == {
        "a.png": "NORMAL",
        "b.png": "PNEUMONIA",
        "c.png": "OTHER",
        "d.png": "OTHER",
        "e.png": "PNEUMONIA",
    }
    assert frame["label"].tolist() == [0, 1, 0, 0, 1]
    assert frame["ambiguous"].tolist() == [False, False, False, True, False]  # only OTHER films are


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (["a.png,NORMAL,0", "b.png,2,0"], ["line 3", "'2'", "NORMAL, PNEUMONIA or OTHER (or 0/1)"]),
        (["a.png,NORMAL,0", "b.png,OTHER,0", "c.png,OTHER,yes"], ["line 4", "opacity 'yes'", "use 1"]),
        (["a.png,NORMAL,0", "b.png,EFFUSION,1"], ["line 3", "'EFFUSION'"]),
    ],
)
def test_labels_csv_errors_name_the_line(
    tmp_path: Path, rows: list[str], words: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    csv = _csv(tmp_path, rows)
    with pytest.raises(DataError) as caught:
        scan_sources([csv])
    assert all(word in str(caught.value) for word in [str(csv), *words]), caught.value
    code, _, err = run_cli(["inspect", str(csv), "--quiet"], capfd)
    assert code == 2
    assert_one_error_line(err, str(csv), *words)


def test_patient_split_spreads_other_films_over_train_and_val() -> None:
    rows = [
        (
            f"/d/{name}{p}_{k}.png",
            "train",
            target_of(name),
            name,
            f"{name}{p}",
            name == "OTHER" and p % 3 == 0,
        )
        for name, patients in (("NORMAL", 40), ("PNEUMONIA", 60), ("OTHER", 30))
        for p in range(patients)
        for k in range(2)
    ]
    frame = pd.DataFrame(rows, columns=["path", "split", "label", "class_name", "patient_id", "ambiguous"])
    out = patient_split(frame, 0.2, seed=0)
    assert (out.groupby("patient_id")["split"].nunique() == 1).all()
    for name, ambiguous in (("NORMAL", False), ("PNEUMONIA", False), ("OTHER", False), ("OTHER", True)):
        mine = out[(out["class_name"] == name) & (out["ambiguous"] == ambiguous)]
        assert (mine["split"] == "val").mean() == pytest.approx(0.2, abs=0.06), (name, ambiguous)


@pytest.fixture(scope="module")
def three_kinds(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A folder site with OTHER films (train and test) and a CSV site with clear and ambiguous ones."""
    base = tmp_path_factory.mktemp("three-kinds")
    folder = make_synthetic_dataset(
        base / "kermany", {"train": 40, "test": 10}, size=48, other={"train": 30, "test": 10}
    )
    csv = make_synthetic_csv_site(base / "nih", per_class=20, size=48, other=20, ambiguous=8)
    return [str(folder), str(csv)]


def test_inspect_counts_other_and_ambiguous_films(
    three_kinds: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    report = inspect_dataset(three_kinds, Config(), progress=False)
    counts = report.counts()
    assert list(counts.columns) == ["NORMAL", "PNEUMONIA", "OTHER", "ambiguous", "total", "pneumonia %"]
    assert (
        counts.loc[("kermany", "test"), "OTHER"] == 10 and counts.loc[("kermany", "test"), "ambiguous"] == 0
    )
    nih = counts.loc["nih"]
    assert nih["OTHER"].sum() == 20 and nih["ambiguous"].sum() == 8 and (nih["OTHER"] > 0).all()
    assert (counts["total"] == counts[["NORMAL", "PNEUMONIA", "OTHER"]].sum(axis=1)).all()
    assert "PNEUMONIA per film without it" in report.text() and "(8 OTHER ambiguous)" in report.text()
    only_other = _csv(tmp_path, [f"{i}.png,OTHER,{i % 2}" for i in range(4)])
    code, out, _ = run_cli(["inspect", str(only_other), "--quiet"], capfd)
    assert code == 0 and "only one class, no PNEUMONIA images" in out
    assert "training: refused" in out and "no PNEUMONIA images" in out and "per NORMAL" not in out


def test_training_data_treats_other_films_as_negatives(three_kinds: list[str]) -> None:
    config = tiny_config().with_overrides(["data.balanced_sampling=true"])
    data = XrayDataModule(three_kinds, config, progress=False)
    data.setup()
    for split in ("train", "val"):
        rows = data.rows[split]
        assert (rows.loc[rows["class_name"] == "OTHER", "label"] == 0).all()
        assert (rows["class_name"] == "OTHER").any() and not rows["ambiguous"].any()  # left out by default
        assert np.array_equal(data.dataset(split).labels, rows["label"].to_numpy(dtype=np.float32))
    train = data.dataset("train")
    weights = sampling_weights(train.labels, train.sites, True, 0.0)
    assert weights is not None
    for site in (0, 1):  # pneumonia and not pneumonia (NORMAL + OTHER) equally likely within each site
        mine = train.sites == site
        assert weights[mine & (train.labels == 1)].sum() == pytest.approx(
            weights[mine & (train.labels == 0)].sum()
        )
    kept = XrayDataModule(three_kinds, config.with_overrides(['data.ambiguous_other="negative"']), False)
    kept.setup()
    together = pd.concat([kept.rows["train"], kept.rows["val"]])
    assert together["ambiguous"].sum() == 8 and (together.loc[together["ambiguous"], "label"] == 0).all()


# --- training and evaluation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_model(three_kinds: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pneumoscan.training.fit import train

    config = tiny_config().with_overrides(
        [
            "train.max_epochs=2",
            "train.batch_size=16",
            'model.options={"widths": [8, 16, 32]}',
            "model.gate=false",
            "gate.generated_negatives=0",
        ]
    )
    result = train(three_kinds, tmp_path_factory.mktemp("run") / "run", config, progress=False)
    assert result.model_path is not None
    return result.model_path


def test_training_with_three_kinds_of_film(other_model: Path) -> None:
    meta = read_meta(other_model)
    assert meta.film_classes == ("NORMAL", "PNEUMONIA", "OTHER") and meta.class_names == OUTPUT_CLASSES
    other = meta.metrics["validation_other"]
    assert "ambiguous" not in other  # left out of validation by default
    assert other["clear"]["films"] == sum(e["clear"]["films"] for e in other["per_site"].values()) > 0
    assert set(other["per_site"]) == {"kermany", "nih"}
    assert set(meta.metrics["validation_per_site"]) == {"kermany", "nih"}
    assert meta.metrics["validation"]["roc_auc"] is not None


def test_wilson_interval() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_evaluate_measures_other_films_apart(
    other_model: Path, three_kinds: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "eval"
    args = ["evaluate", str(other_model), *three_kinds, "--out", str(out_dir), "--report", "--quiet"]
    code, out, _ = run_cli(args, capfd)
    assert code == 0 and "OTHER films (another finding) called PNEUMONIA, with Wilson score interval" in out
    assert "clear OTHER called PNEUMONIA" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    table = pd.read_csv(out_dir / "predictions.csv")
    frame = evaluation_split(scan_sources(three_kinds), None)
    alone = evaluate_manifest(Predictor.load(other_model), frame[frame["class_name"] != "OTHER"], "x")
    for name in ("images", "accuracy", "roc_auc", "sensitivity", "specificity", "ece", "confusion_matrix"):
        assert metrics[name] == alone.metrics[name], name  # NORMAL/PNEUMONIA metrics as without OTHER
    assert metrics["intervals"] == alone.metrics["intervals"]
    other = metrics["other"]
    clear = table[(table["class_name"] == "OTHER") & ~table["ambiguous"]]
    assert other["clear"]["films"] == len(clear) == 10 + 12 and other["ambiguous"]["films"] == 8
    assert other["clear"]["called_pneumonia"] == int(clear["predicted"].sum())
    low, high = other["clear"]["ci"]
    assert low <= other["clear"]["fraction"] <= high
    assert set(other["per_site"]) == {"kermany", "nih"} and "ambiguous" not in other["per_site"]["kermany"]
    sites = metrics["groups"]["site"]
    assert sites["nih"]["OTHER"] == 20 and sites["nih"]["other"]["ambiguous"]["films"] == 8
    assert sites["kermany"]["films"] == sites["kermany"]["NORMAL"] + sites["kermany"]["PNEUMONIA"] == 20
    page = (out_dir / "report.html").read_text()
    assert "<section id='other'>" in page and "data-site='nih'" in page and "Ambiguous OTHER films" in page
    assert "trained with OTHER films as negatives" in page and "OTHER (ambiguous)" in page


def test_evaluate_only_other_films(
    trained_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    csv = make_synthetic_csv_site(tmp_path / "site", per_class=0, size=48, other=12, ambiguous=4)
    report = tmp_path / "report.html"
    code, out, _ = run_cli(
        ["evaluate", str(trained_model), str(csv), "--report", str(report), "--quiet"], capfd
    )
    assert code == 0 and "no NORMAL or PNEUMONIA films" in out
    assert "OTHER films (another finding)" in out and " of 8 (" in out and " of 4 (" in out
    page = report.read_text()
    assert (
        "<section id='other'>" in page and "not trained on OTHER films" in page and "id='metrics'" not in page
    )


# --- the class set travels in the model file ---------------------------------------------------------


def test_old_model_files_load_with_the_default_classes() -> None:
    from safetensors import safe_open

    from pneumoscan.model_source import bundled_model_path

    path = bundled_model_path()
    with safe_open(str(path), framework="np") as handle:
        raw = json.loads(handle.metadata()["pneumoscan"])
    assert "film_classes" not in raw  # an "old" file
    meta = read_meta(path)
    assert meta.film_classes == ("NORMAL", "PNEUMONIA") and meta.class_names == ("NORMAL", "PNEUMONIA")


def test_the_class_names_come_from_the_model_file(
    relabelled_model: Path, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from conftest import RELABELLED
    from fastapi.testclient import TestClient
    from pydicom import dcmread
    from test_serve import encode

    from pneumoscan.serve.app import create_app

    films = sorted((synthetic_data / "test").rglob("*.jpeg"))[::8]
    predictor = Predictor.load(relabelled_model)
    assert predictor.classes_ == RELABELLED
    images = np.stack([synthetic_film(np.random.default_rng(i), bool(i % 2), 96) for i in range(4)])
    prepared = np.stack([Image.fromarray(im).resize((64, 64)) for im in images]).astype(np.uint8)
    proba = predictor.predict_proba(prepared)
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.allclose(proba[:, 1], predictor.probabilities(prepared))
    labels = {p.label for p in predictor.predict_files(films)}
    assert labels and labels <= set(RELABELLED)

    code, out, _ = run_cli(["predict", str(relabelled_model), *map(str, films), "--json"], capfd)
    assert code == 0 and {json.loads(line)["label"] for line in out.splitlines()} <= set(RELABELLED)
    code, out, _ = run_cli(["predict", str(relabelled_model), *map(str, films), "--csv", "-"], capfd)
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["label"]) <= set(RELABELLED)
    code, out, _ = run_cli(["predict", str(relabelled_model), str(films[0])], capfd)
    assert code == 0 and out.splitlines()[-1].split()[1] in RELABELLED

    with TestClient(create_app(predictor)) as client:
        card = client.get("/v1/model").json()
        assert tuple(card["class_names"]) == RELABELLED and card["film_classes"] == ["NORMAL", "PNEUMONIA"]
        answer = client.post(
            "/v1/predict", files=[("files", ("film.png", encode(images[1], "PNG"), "image/png"))]
        ).json()
        assert answer["results"][0]["label"] in RELABELLED

    pytest.importorskip("highdicom")
    from dicom_factory import study_header, write_dicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from pneumoscan.pacs.results import result_sr

    source = dcmread(write_dicom(tmp_path / "film.dcm", images[1], header=study_header(generate_uid(), 1)))
    [prediction] = predictor.predict_files([tmp_path / "film.dcm"])
    meta = predictor.meta
    findings = {}
    for label in (*RELABELLED, "PNEUMONIA"):  # the literal PNEUMONIA is not this model's positive class
        prediction.label = label
        findings[label] = _finding_code(result_sr(source, prediction, meta))
    absent, present = codes.SCT.Absent.value, codes.SCT.Present.value
    assert findings == {"CLEAR": absent, "PNEU": present, "PNEUMONIA": absent}


def _finding_code(sr: object) -> str:
    """The value code of the SR's qualitative evaluation of pneumonia (SCT 233604007)."""
    stack = list(sr.ContentSequence)  # type: ignore[attr-defined]
    while stack:
        item = stack.pop()
        name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "CODE" and name == "233604007":
            return str(item.ConceptCodeSequence[0].CodeValue)
        stack.extend(item.get("ContentSequence", []))
    raise AssertionError("no pneumonia finding in the SR")
