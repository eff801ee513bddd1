"""The refusal gate: trained with every model, stored in the model file, and shown in every path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_dicom
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.data.negatives import GENERATORS, generate_negatives
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.model_file import read_meta, read_model, save_model
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor
from pneumoscan.synthetic import synthetic_film

NOT_CHEST = ("text", "chart", "limb", "ct", "skull", "shapes")


def chest_files(data: Path) -> list[str]:
    return sorted(str(p) for p in (data / "test").rglob("*.jpeg"))


@pytest.fixture(scope="module")
def not_chest_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Clearly different images: generated non-chest kinds, with a seed the training never used."""
    folder = tmp_path_factory.mktemp("not-chest")
    images = generate_negatives(len(GENERATORS) * 6, 128, seed=12345)
    kinds = list(GENERATORS)
    paths = []
    for i, image in enumerate(images):
        if kinds[i % len(kinds)] in NOT_CHEST:
            paths.append(folder / f"{kinds[i % len(kinds)]}-{i}.png")
            Image.fromarray(image).save(paths[-1])
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def onnx_model(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pneumoscan.export import export_onnx

    return export_onnx(trained_model, tmp_path_factory.mktemp("onnx") / "gated.onnx")


def test_every_trained_model_carries_its_gate(trained_model: Path) -> None:
    meta = read_meta(trained_model)
    assert meta.gate is not None and meta.model.gate
    assert meta.gate.threshold >= meta.config.gate.min_threshold  # type: ignore[union-attr]
    validation = meta.gate.validation
    assert validation["chest_refused"] <= meta.config.gate.max_refused  # type: ignore[union-attr]
    assert set(validation["negatives_refused"]) >= set(GENERATORS)
    assert any(name.startswith("gate.") for name in read_model(trained_model)[1])


def test_gate_keeps_chest_films_and_refuses_other_images(
    trained_model: Path, synthetic_data: Path, not_chest_files: list[str]
) -> None:
    predictor = Predictor.load(trained_model)
    chest = predictor.predict_files(chest_files(synthetic_data))
    assert sum(not p.refused for p in chest) >= 0.99 * len(chest)
    assert all(p.label is not None and p.ood_score is not None for p in chest if not p.refused)
    other = predictor.predict_files(not_chest_files)
    refused = [p for p in other if p.refused]
    assert len(refused) >= 0.9 * len(other), [(p.path, p.ood_score) for p in other if not p.refused]
    assert all(p.label is None and "out-of-distribution score" in p.refusal_reason for p in refused)


def test_no_refuse_labels_them_but_keeps_the_mark(trained_model: Path, not_chest_files: list[str]) -> None:
    refused = Predictor.load(trained_model).predict_files(not_chest_files)
    anyway = Predictor.load(trained_model, refuse=False).predict_files(not_chest_files)
    for r, a in zip(refused, anyway, strict=True):
        assert a.probability == pytest.approx(r.probability) and a.ood_score == pytest.approx(r.ood_score)
        assert not a.refused and a.label is not None and a.out_of_distribution == r.out_of_distribution


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"Modality": "CT"}, "Modality is CT"),
        ({"Modality": "MR"}, "Modality is MR"),
        ({"BodyPartExamined": "KNEE"}, "BodyPartExamined is KNEE"),
        ({"ViewPosition": "LL"}, "lateral"),
        ({"ViewPosition": "RL"}, "lateral"),
    ],
)
def test_dicom_header_refusals(
    trained_model: Path, tmp_path: Path, header: dict[str, str], reason: str
) -> None:
    path = write_dicom(
        tmp_path / "study.dcm", synthetic_film(np.random.default_rng(0), True, 96), header=header
    )
    (refused,) = Predictor.load(trained_model).predict_files([path])
    assert refused.refused and reason in refused.refusal_reason
    assert refused.probability is None and refused.error is None  # no pixel was decoded
    (anyway,) = Predictor.load(trained_model, refuse=False).predict_files([path])
    assert anyway.out_of_distribution and not anyway.refused and anyway.probability is not None


@pytest.mark.parametrize(
    "header",
    [{}, {"Modality": "CR"}, {"BodyPartExamined": "CHEST"}, {"ViewPosition": "PA"}, {"ViewPosition": "AP"}],
)
def test_dicom_headers_of_frontal_chest_films_pass(trained_model: Path, tmp_path: Path, header: dict) -> None:
    path = write_dicom(
        tmp_path / "study.dcm", synthetic_film(np.random.default_rng(0), True, 96), header=header
    )
    (prediction,) = Predictor.load(trained_model).predict_files([path])
    assert "DICOM" not in prediction.refusal_reason and prediction.probability is not None


def test_cli_csv_and_json_show_the_refusal(
    trained_model: Path, synthetic_data: Path, not_chest_files: list[str], tmp_path: Path, capsys
) -> None:
    files = [chest_files(synthetic_data)[0], not_chest_files[0]]
    assert main(["predict", str(trained_model), *files, "--csv", str(tmp_path / "out.csv")]) == 0
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert {"ood_score", "refused", "refusal_reason", "out_of_distribution"} <= set(table.columns)
    assert list(table["refused"]) == [False, True]
    assert table["label"].iloc[1] == "" and table["refusal_reason"].iloc[1] != ""
    capsys.readouterr()
    assert main(["predict", str(trained_model), *files, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["refused"] for r in rows] == [False, True] and rows[1]["label"] is None
    assert main(["predict", str(trained_model), *files, "--json", "--no-refuse"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rows[1]["label"] is not None and rows[1]["out_of_distribution"] and not rows[1]["refused"]
    assert "judged anyway" in captured.err


def test_plain_output_says_refused(trained_model: Path, not_chest_files: list[str], capsys) -> None:
    assert main(["predict", str(trained_model), not_chest_files[0]]) == 0
    out = capsys.readouterr().out
    assert "REFUSED" in out and "out of distribution" in out


def test_onnx_engine_refuses_the_same_images(
    trained_model: Path, onnx_model: Path, synthetic_data: Path, not_chest_files: list[str]
) -> None:
    files = chest_files(synthetic_data)[:4] + not_chest_files
    torch_results = Predictor.load(trained_model).predict_files(files)
    onnx_results = Predictor.load(onnx_model, "onnx").predict_files(files)
    for t, o in zip(torch_results, onnx_results, strict=True):
        assert o.refused == t.refused and o.ood_score == pytest.approx(t.ood_score, abs=1e-2)  # bf16 here


def test_evaluate_counts_refused_films_and_measures_the_rest(
    trained_model: Path, synthetic_data: Path
) -> None:
    result = evaluate(Predictor.load(trained_model), synthetic_data, "test", progress=False)
    assert {"ood_score", "refused"} <= set(result.predictions.columns)
    assert result.metrics["refused"] == int(result.predictions["refused"].sum())
    assert result.metrics["images"] == len(result.predictions) - result.metrics["refused"]


def test_older_model_without_gate_still_works_and_says_so(
    trained_model: Path, tmp_path: Path, capsys
) -> None:
    meta, tensors = read_model(trained_model)
    old_meta = meta.model_copy(update={"gate": None, "model": meta.model.model_copy(update={"gate": False})})
    old_tensors = {k: v for k, v in tensors.items() if not k.startswith("gate.")}
    assert network_tensors(build_model(old_meta.model, old_meta.preprocess)).keys() == old_tensors.keys()
    old = save_model(tmp_path / "old.safetensors", old_tensors, old_meta)
    film = tmp_path / "film.png"
    Image.fromarray(synthetic_film(np.random.default_rng(1), True, 96)).save(film)
    (prediction,) = Predictor.load(old).predict_files([film])
    assert prediction.ood_score is None and not prediction.refused and prediction.label is not None
    assert main(["info", str(old)]) == 0
    assert "no out-of-distribution check" in capsys.readouterr().err
    assert main(["predict", str(old), str(film)]) == 0
    assert "no out-of-distribution check" in capsys.readouterr().err


def test_negative_folders_split_every_fifth_file_out_and_name_a_missing_folder(tmp_path: Path) -> None:
    from pneumoscan.data.datamodule import negative_files
    from pneumoscan.errors import DataError

    for i in range(10):
        Image.fromarray(np.full((32, 32), i * 20, np.uint8)).save(tmp_path / f"knee{i}.png")
    train, val = negative_files(tmp_path, "train"), negative_files(tmp_path, "val")
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    with pytest.raises(DataError, match="missing: negatives folder not found"):
        negative_files(tmp_path / "missing", "train")


def test_gate_threshold_keeps_every_site_under_its_refusal_share() -> None:
    import numpy as np

    from pneumoscan.config import GateConfig
    from pneumoscan.training.gate import choose_gate

    rng = np.random.default_rng(0)
    usual = rng.uniform(0.0, 0.3, 1000)  # a large site of typical films
    bedside = rng.uniform(0.2, 0.9, 100)  # a small site of unusual (e.g. bedside) films
    scores, sites = np.concatenate([usual, bedside]), np.repeat([0, 1], [1000, 100])
    cfg = GateConfig(max_refused=0.02, min_threshold=0.5)
    gate = choose_gate(scores, {}, cfg, sites)
    refused = gate.validation["chest_refused_by_site"]
    assert refused["0"] <= 0.02 and refused["1"] <= 0.02  # the small site is not sacrificed
    pooled = choose_gate(scores, {}, cfg)  # without sites: one quantile over all films
    assert pooled.threshold < gate.threshold and (bedside > pooled.threshold).mean() > 0.02
