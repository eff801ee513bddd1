"""``pneumoscan calibrate``: refit temperature and threshold on a new site, in both engines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from pneumoscan.calibration import calibrated, fit_temperature
from pneumoscan.cli import main
from pneumoscan.data.manifest import scan_dataset
from pneumoscan.engines.onnx_engine import OnnxEngine
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.evaluation.intervals import Proportion, lower_bound
from pneumoscan.model_file import read_meta, read_model
from pneumoscan.model_source import bundled_model_path
from pneumoscan.predict import Predictor
from pneumoscan.recalibrate import MIN_FILMS_PER_CLASS, content_hash
from pneumoscan.serve.app import create_app
from pneumoscan.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new "site": synthetic films of another seed and size, three films per patient, one split."""
    root = make_synthetic_dataset(
        tmp_path_factory.mktemp("site"), {"north": 30}, images_per_patient=3, size=80, seed=7
    )
    return root / "north"


@pytest.fixture(scope="module")
def exported(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(trained_model), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def recalibrated(trained_model: Path, site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recal") / "north.safetensors"
    assert (
        main(["calibrate", str(trained_model), str(site), "--out", str(out), "--rule", "youden", "--quiet"])
        == 0
    )
    return out


def test_calibrate_a_safetensors_model(trained_model: Path, site: Path, recalibrated: Path) -> None:
    before, after = read_meta(trained_model), read_meta(recalibrated)
    logits = Predictor.load(trained_model).logits(_pixels(trained_model, site))
    labels = scan_dataset(site)["label"].to_numpy()
    assert after.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-6)
    assert "Youden" in after.threshold_rule and after.threshold != before.threshold

    [record] = after.calibration_history
    assert record.sites == ["north"] and record.split == "north" and record.data == [str(site)]
    assert record.films == {"NORMAL": 30, "PNEUMONIA": 30} and record.patients == 20
    assert record.content_hash == content_hash(scan_dataset(site))
    assert record.previous == before.operating_point() and record.new == after.operating_point()
    assert record.metrics_after["ece"] == pytest.approx(
        evaluate(Predictor.load(recalibrated), site, progress=False).metrics["ece"]
    )
    assert after.model_id() != before.model_id() and after.config == before.config
    old_weights, new_weights = read_model(trained_model)[1], read_model(recalibrated)[1]
    assert old_weights.keys() == new_weights.keys()
    assert all(np.array_equal(old_weights[k], new_weights[k]) for k in old_weights)


def _pixels(model: Path, site: Path) -> np.ndarray:
    from pneumoscan.data.cache import load_cached

    return load_cached(
        scan_dataset(site)["path"].tolist(), read_meta(model).preprocess, progress=False
    ).pixels


def test_calibrate_an_onnx_model_without_torch(
    exported: Path, recalibrated: Path, site: Path, tmp_path: Path
) -> None:
    out = tmp_path / "north.onnx"
    code = (
        "import sys; from pneumoscan.cli import main; "
        f"assert main(['calibrate', {str(exported)!r}, {str(site)!r}, '--out', {str(out)!r}, "
        "'--rule', 'youden', '--quiet']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    meta, reference = OnnxEngine.load(out).meta, read_meta(recalibrated)
    assert meta.temperature == pytest.approx(reference.temperature, rel=1e-3)
    assert meta.threshold == pytest.approx(reference.threshold, abs=1e-3)
    assert meta.calibration_history[0].content_hash == reference.calibration_history[0].content_hash
    old, new = onnx.load(str(exported)), onnx.load(str(out))
    assert old.graph == new.graph
    assert {p.key: p.value for p in new.metadata_props}["temperature"] == str(meta.temperature)


def test_calibrating_again_appends_to_the_history(recalibrated: Path, site: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.safetensors"
    argv = ["calibrate", str(recalibrated), str(site), "--out", str(out), "--target-sensitivity", "0.9"]
    assert main([*argv, "--quiet"]) == 0
    first, second = read_meta(out).calibration_history
    assert second.previous == first.new and "sensitivity >= 0.9" in second.new.threshold_rule
    assert evaluate(Predictor.load(out), site, progress=False).metrics["sensitivity"] >= 0.9


def test_a_recalibrated_model_loads_everywhere(
    recalibrated: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threshold = read_meta(recalibrated).threshold
    film = next(site.rglob("*.jpeg"))
    assert main(["predict", str(recalibrated), str(film), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == threshold
    assert main(["evaluate", str(recalibrated), str(site), "--quiet"]) == 0
    assert f"threshold {threshold:.3f}" in capsys.readouterr().out
    with TestClient(create_app(Predictor.load(recalibrated))) as client:
        card = client.get("/v1/model").json()
    assert card["threshold"] == threshold
    exported = tmp_path / "recalibrated.onnx"
    assert main(["export", str(recalibrated), str(exported)]) == 0
    capsys.readouterr()
    assert OnnxEngine.load(exported).meta.calibration_history == read_meta(recalibrated).calibration_history
    assert main(["info", str(recalibrated)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["calibration_history"][0]["sites"] == ["north"]
    assert "calibration history:" in err and "north (30 NORMAL, 30 PNEUMONIA" in err


def test_older_model_files_load_with_an_empty_history() -> None:
    assert read_meta(bundled_model_path()).calibration_history == []


@pytest.fixture
def one_class_site(site: Path, tmp_path: Path) -> Path:
    root = tmp_path / "sick"
    shutil.copytree(site / "PNEUMONIA", root / "PNEUMONIA")
    return root


@pytest.fixture
def small_site(site: Path, tmp_path: Path) -> Path:
    root = tmp_path / "small"
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True)
        for film in sorted((site / name).iterdir())[: MIN_FILMS_PER_CLASS - 1]:
            shutil.copy(film, root / name / film.name)
    return root


@pytest.mark.parametrize(
    ("case", "extra", "expected"),
    [
        ("one-class", [], "0 NORMAL and 30 PNEUMONIA films; calibrating needs labelled films of both"),
        ("small", [], f"19 NORMAL and 19 PNEUMONIA films; calibrating needs labelled films of both classes, "
                      f"at least {MIN_FILMS_PER_CLASS} of each"),
        ("site", ["--rule", "youden", "--target-sensitivity", "0.9"], "--target-sensitivity goes with"),
        ("site", ["--target-sensitivity", "1.5"], "--target-sensitivity: Input should be less than or equal"),
        ("site", ["--threshold", "0.3"], "--threshold goes with --rule fixed"),
        ("site", ["--split", "test"], "no split 'test'"),
    ],
)  # fmt: skip
def test_bad_requests_give_one_line_errors(
    case: str,
    extra: list[str],
    expected: str,
    request: pytest.FixtureRequest,
    trained_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = request.getfixturevalue({"one-class": "one_class_site", "small": "small_site"}.get(case, "site"))
    out = tmp_path / "new.safetensors"
    assert main(["calibrate", str(trained_model), str(data), "--out", str(out), "--quiet", *extra]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("pneumoscan: error: ") and expected in line
    assert not out.exists()


def test_the_output_must_be_a_new_file_of_the_same_kind(
    trained_model: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out, expected in [
        (tmp_path / "new.onnx", "must end in .safetensors"),
        (trained_model, "is the model being calibrated; choose another --out"),
    ]:
        assert main(["calibrate", str(trained_model), str(site), "--out", str(out), "--quiet"]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert expected in line


def test_calibrated_probabilities_match_the_predictor(recalibrated: Path, site: Path) -> None:
    predictor = Predictor.load(recalibrated)
    pixels = _pixels(recalibrated, site)
    np.testing.assert_allclose(
        predictor.probabilities(pixels), calibrated(predictor.logits(pixels), predictor.meta.temperature)
    )


def test_the_bound_rule_is_the_default_for_a_target_and_is_recorded(
    trained_model: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bound.safetensors"
    argv = ["calibrate", str(trained_model), str(site), "--out", str(out), "--target-sensitivity", "0.9"]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    [record] = read_meta(out).calibration_history
    assert (record.rule, record.target, record.confidence, record.forced) == (
        "sensitivity-bound",
        0.9,
        0.95,
        False,
    )
    tp, fn, tn, fp = (record.counts[key] for key in ("tp", "fn", "tn", "fp"))
    assert tp + fn == 30 and tn + fp == 30
    # 30 pneumonia films bound 0.9 only when all 30 are flagged: 0.05 ** (1 / 30) = 0.905
    assert tp == 30 and record.bound == pytest.approx(lower_bound(30, 30, 0.95)) and record.bound >= 0.9
    assert f"sensitivity {Proportion(tp, 30).text()}" in printed and "specificity " in printed
    assert (
        "target sensitivity >= 0.9 at 95% confidence: reached (one-sided Clopper-Pearson lower bound 0.905)"
        in printed
    )
    assert (
        "95% lower confidence bound (Clopper-Pearson) of calibration sensitivity >= 0.9"
        in read_meta(out).threshold_rule
    )

    # evaluate and its report show the operating point's exact intervals and the calibration target
    report = tmp_path / "report.html"
    assert main(["evaluate", str(out), str(site), "--quiet", "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"sensitivity {Proportion(tp, 30).text()}, specificity {Proportion(tn, 30).text()}; Clopper-Pearson"
        in printed
    )
    page = report.read_text()
    assert "id='operating-point'" in page and f"<td>{tp} / 30</td>" in page
    assert "sensitivity &ge; 0.9 on 60 films of north: its 95% lower confidence bound reached 0.905" in page

    point = tmp_path / "point.safetensors"
    assert (
        main([*argv[:4], str(point), "--rule", "sensitivity-point", "--target-sensitivity", "0.9", "--quiet"])
        == 0
    )
    [record] = read_meta(point).calibration_history
    assert record.rule == "sensitivity-point" and record.confidence is None and record.bound is None


def test_too_few_films_for_the_target_are_refused_with_the_count_needed(
    trained_model: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new.safetensors"
    argv = [
        "calibrate",
        str(trained_model),
        str(site),
        "--out",
        str(out),
        "--target-sensitivity",
        "0.95",
        "--quiet",
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert "30 PNEUMONIA calibration films cannot support sensitivity >= 0.95 at 95% confidence" in line
    assert "it takes at least 59 PNEUMONIA films" in line and "--force" in line
    assert "NOT reached" in captured.out and not out.exists()

    assert main([*argv, "--force"]) == 0
    assert "it takes at least 59" in capsys.readouterr().err  # said again, as a warning
    [record] = read_meta(out).calibration_history
    assert record.forced and record.bound is not None and record.bound < 0.95 and "FORCED" in record.summary()


def test_calibrate_an_onnx_model_with_the_bound_rule_without_torch(
    exported: Path, site: Path, tmp_path: Path
) -> None:
    out = tmp_path / "north.onnx"
    code = (
        "import sys; from pneumoscan.cli import main; "
        f"assert main(['calibrate', {str(exported)!r}, {str(site)!r}, '--out', {str(out)!r}, "
        "'--target-specificity', '0.8', '--confidence', '0.9', '--quiet']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    [record] = OnnxEngine.load(out).meta.calibration_history
    assert (record.rule, record.target, record.confidence) == ("specificity-bound", 0.8, 0.9)
    assert record.bound == pytest.approx(lower_bound(record.counts["tn"], 30, 0.9)) and record.bound >= 0.8
    assert lower_bound(record.counts["tn"] - 1, 30, 0.9) < 0.8  # the lowest threshold that meets it


@pytest.fixture
def not_chest_site(tmp_path: Path) -> Path:
    """25 NORMAL and 25 PNEUMONIA images that are no chest films (the gate refuses them)."""
    from PIL import Image

    from pneumoscan.data.negatives import GENERATORS, generate_negatives

    kinds = [kind for kind in GENERATORS if kind in ("text", "chart", "limb", "ct", "skull", "shapes")]
    images = generate_negatives(len(GENERATORS) * 10, 128, seed=4321)
    chosen = [image for i, image in enumerate(images) if list(GENERATORS)[i % len(GENERATORS)] in kinds][:50]
    for i, image in enumerate(chosen):
        folder = tmp_path / "other" / ("NORMAL" if i % 2 else "PNEUMONIA")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return tmp_path / "other"


def test_films_the_gate_refuses_are_left_out_and_said(
    trained_model: Path, not_chest_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = evaluate(Predictor.load(trained_model), not_chest_site, progress=False).metrics["refused"]
    assert refused >= 45
    out = tmp_path / "new.safetensors"
    assert main(["calibrate", str(trained_model), str(not_chest_site), "--out", str(out), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"after leaving out {refused} films the model's gate refuses as not chest films" in line
    assert not out.exists()


def test_films_without_signal_are_refused(
    trained_model: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    film = next(site.rglob("*.jpeg"))
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "same" / name).mkdir(parents=True)
        for i in range(25):
            shutil.copy(film, tmp_path / "same" / name / f"{i}.jpeg")
    out = tmp_path / "new.safetensors"
    argv = ["calibrate", str(trained_model), str(tmp_path / "same"), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    *warnings, line = capsys.readouterr().err.splitlines()
    assert [w for w in warnings if "a degenerate fit" in w] == warnings and len(warnings) == 1
    # identical films: their logits differ only by the batch's rounding, so the ROC-AUC is near 0.5
    assert "do not separate NORMAL from PNEUMONIA on these films (ROC-AUC 0." in line and "no signal" in line
    assert not out.exists()
    assert main([*argv, "--force"]) == 0
    said = capsys.readouterr().err
    assert "no signal" in said and "reached its upper bound 20: a degenerate fit" in said
    assert read_meta(out).calibration_history[0].forced
