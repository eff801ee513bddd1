"""ONNX export and the onnxruntime engine: parity with PyTorch, metadata, torch-free prediction, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from pneumoscan.cli import main
from pneumoscan.config import recipe
from pneumoscan.engines.onnx_engine import OnnxEngine
from pneumoscan.engines.torch_engine import TorchEngine, load_network, network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.export import export_onnx
from pneumoscan.model_file import ModelMeta, read_meta, save_model
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import prepare, to_model_input
from pneumoscan.synthetic import synthetic_film

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_model(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model exported through the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(trained_model), "--format", "onnx", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def seed_cnn_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained ``seed-cnn`` (96 px RGB) saved as a model file and exported at opset 18."""
    import torch

    torch.manual_seed(0)
    config = recipe("seed").with_overrides(["preprocess.image_size=96"])
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config, threshold=0.4)
    folder = tmp_path_factory.mktemp("seed")
    model = save_model(
        folder / "seed.safetensors", network_tensors(build_model(meta.model, meta.preprocess)), meta
    )
    return model, export_onnx(model, folder / "seed.onnx", opset=18)


@pytest.fixture(scope="module", params=["trained", "seed-cnn"])
def engines(
    request: pytest.FixtureRequest, trained_model: Path, onnx_model: Path, seed_cnn_files: tuple[Path, Path]
) -> tuple[TorchEngine, OnnxEngine]:
    """The same network as a fp32 PyTorch engine and as an onnxruntime engine."""
    model, exported = (trained_model, onnx_model) if request.param == "trained" else seed_cnn_files
    return TorchEngine(*load_network(model), precision="32"), OnnxEngine.load(exported)


def _films(count: int, size: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(count)
    return [synthetic_film(rng, pneumonia=bool(i % 2), size=size) for i in range(count)]


@pytest.mark.parametrize("batch", [1, 7])
def test_logits_match_torch_on_random_inputs(engines: tuple[TorchEngine, OnnxEngine], batch: int) -> None:
    torch_engine, onnx_engine = engines
    cfg = onnx_engine.meta.preprocess
    x = np.random.default_rng(batch).random((batch, cfg.channels, cfg.image_size, cfg.image_size), np.float32)
    got, got_gate = onnx_engine.run(x)
    want, want_gate = torch_engine.run(x)
    assert got.shape == (batch,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    assert (got_gate is None) == (want_gate is None)  # the gate travels in the graph
    if want_gate is not None:
        np.testing.assert_allclose(got_gate, want_gate, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("batch", [1, 7])
def test_logits_match_torch_on_films(engines: tuple[TorchEngine, OnnxEngine], batch: int) -> None:
    torch_engine, onnx_engine = engines
    cfg = onnx_engine.meta.preprocess
    x = to_model_input(np.stack([prepare(film / np.float32(255), cfg) for film in _films(batch)]), cfg)
    for got, want in zip(onnx_engine.run(x), torch_engine.run(x), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_metadata_round_trips(trained_model: Path, onnx_model: Path) -> None:
    meta = read_meta(trained_model)
    assert OnnxEngine.load(onnx_model).meta == meta
    graph = onnx.load(str(onnx_model))
    props = {p.key: p.value for p in graph.metadata_props}
    assert float(props["threshold"]) == meta.threshold
    assert float(props["temperature"]) == meta.temperature
    assert props["architecture"] == "pneumo-resnet"
    assert ModelMeta.model_validate_json(props["pneumoscan"]).preprocess == meta.preprocess
    assert meta.gate is not None  # the fixture's recipe trains a gate, which the graph carries
    [image], [logit, gate] = graph.graph.input, graph.graph.output
    assert (image.name, logit.name, gate.name) == ("image", "logit", "chest_logit")
    assert image.type.tensor_type.shape.dim[0].dim_param
    assert len(logit.type.tensor_type.shape.dim) == len(gate.type.tensor_type.shape.dim) == 1


def test_the_class_names_travel_in_the_export(
    relabelled_model: Path, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from conftest import RELABELLED

    out = tmp_path / "relabelled.onnx"
    assert main(["export", str(relabelled_model), "--format", "onnx", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["class_names"] == ",".join(RELABELLED) and props["film_classes"] == "NORMAL,PNEUMONIA"
    predictor = Predictor.load(out)
    assert predictor.engine.name == "onnx" and predictor.classes_ == RELABELLED
    files = sorted((synthetic_data / "test").rglob("*.jpeg"))[::10]
    assert {p.label for p in predictor.predict_files(files)} <= set(RELABELLED)
    capfd.readouterr()
    assert main(["predict", str(out), *map(str, files), "--json"]) == 0
    assert {json.loads(line)["label"] for line in capfd.readouterr().out.splitlines()} <= set(RELABELLED)


def test_seed_cnn_keeps_its_opset_and_threshold(seed_cnn_files: tuple[Path, Path]) -> None:
    _, exported = seed_cnn_files
    assert {o.version for o in onnx.load(str(exported)).opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert OnnxEngine.load(exported).meta.threshold == 0.4


def test_predictor_matches_torch(trained_model: Path, onnx_model: Path, synthetic_data: Path) -> None:
    files = sorted((synthetic_data / "test").rglob("*.jpeg"))[::5]
    reference = Predictor(TorchEngine(*load_network(trained_model), precision="32")).predict_files(files)
    got = Predictor.load(onnx_model, engine="onnx").predict_files(files)
    assert [p.label for p in got] == [p.label for p in reference]
    np.testing.assert_allclose(
        [p.probability for p in got], [p.probability for p in reference], rtol=0, atol=TOLERANCE
    )


def test_onnx_prediction_never_imports_torch(onnx_model: Path, synthetic_data: Path) -> None:
    image = next((synthetic_data / "test").rglob("*.jpeg"))
    code = (
        "import sys; from pneumoscan.predict import Predictor; "
        f"p = Predictor.load({str(onnx_model)!r}, engine='onnx'); "
        f"assert p.predict_files([{str(image)!r}])[0].probability is not None; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_predict_and_evaluate_with_onnx(
    onnx_model: Path, synthetic_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = next((synthetic_data / "test").rglob("*.jpeg"))
    assert main(["predict", "--engine", "onnx", str(onnx_model), str(image), "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["path"] == str(image) and 0 <= row["probability"] <= 1
    assert main(["evaluate", str(onnx_model), str(synthetic_data), "--engine", "onnx", "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out.lower()


def test_the_engine_comes_from_the_model_file(
    onnx_model: Path, synthetic_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = next((synthetic_data / "test").rglob("*.jpeg"))
    assert main(["predict", str(onnx_model), str(image), "--json"]) == 0  # no --engine needed
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["probability"] == pytest.approx(
        Predictor.load(onnx_model, engine="onnx").predict_files([image])[0].probability
    )
    assert main(["info", str(onnx_model)]) == 0
    assert json.JSONDecoder().raw_decode(capsys.readouterr().out)[0]["format"] == "pneumoscan-model"
    assert main(["predict", "--engine", "torch", str(onnx_model), str(image)]) == 2
    assert "runs on the onnx engine" in capsys.readouterr().err
    assert main(["export", str(onnx_model), str(onnx_model.with_name("again.onnx"))]) == 2
    assert "already an ONNX file" in capsys.readouterr().err


@pytest.fixture(params=["no-metadata", "damaged", "safetensors"])
def bad_model(
    request: pytest.FixtureRequest, onnx_model: Path, trained_model: Path, tmp_path: Path
) -> tuple[Path, str]:
    """A file the onnx engine must refuse, and the words its error message must contain."""
    if request.param == "safetensors":
        return trained_model, "the onnx engine reads .onnx files; use --engine torch or export it first"
    path = tmp_path / f"{request.param}.onnx"
    if request.param == "damaged":
        path.write_bytes(b"not a protobuf at all")
        return path, "not a loadable ONNX model or damaged"
    graph = onnx.load(str(onnx_model))
    del graph.metadata_props[:]
    onnx.save(graph, str(path))
    return path, "without pneumoscan metadata; export it first: pneumoscan export MODEL --format onnx"


def test_bad_models_give_one_line_errors(
    bad_model: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, expected = bad_model
    assert main(["predict", "--engine", "onnx", str(model), str(tmp_path / "x.png")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pneumoscan: error: {model}: ") and expected in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--opset", "13"], "opset 13 is not supported"), ([], "must end in .onnx")],
    ids=["old-opset", "not-onnx-suffix"],
)
def test_bad_export_requests_give_one_line_errors(
    args: list[str], expected: str, trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / ("m.onnx" if args else "m.bin")
    assert main(["export", str(trained_model), str(out), *args]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert expected in line and not out.exists()


def test_missing_onnxruntime_says_what_to_install(onnx_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PneumoscanError, match="pip install onnxruntime"):
        OnnxEngine.load(onnx_model)


def test_int8_export_keeps_the_predictions(
    trained_model: Path, onnx_model: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int8.onnx"
    calibration = synthetic_data / "train"
    args = ["export", str(trained_model), str(out), "--int8", str(calibration), "--calibration-images", "40"]
    assert main(args) == 0
    graph = onnx.load(out)
    ops = [node.op_type for node in graph.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    first_conv = next(node for node in graph.graph.node if node.op_type == "Conv")
    producers = {output: node.op_type for node in graph.graph.node for output in node.output}
    assert producers.get(first_conv.input[1]) != "DequantizeLinear"  # the stem's weights stay float
    props = {prop.key: prop.value for prop in graph.metadata_props}
    assert props["quantization"].startswith("int8")

    quantized, exact = Predictor.load(out, engine="onnx"), Predictor.load(onnx_model, engine="onnx")
    assert quantized.meta == exact.meta
    films = sorted((synthetic_data / "test").rglob("*.jpeg"))
    got = np.array([p.probability for p in quantized.predict_files(films)])
    want = np.array([p.probability for p in exact.predict_files(films)])
    assert np.abs(got - want).max() < 0.1
    labels = np.array([path.parent.name == "PNEUMONIA" for path in films])
    assert np.mean((got >= 0.5) == labels) >= np.mean((want >= 0.5) == labels) - 0.05


@pytest.mark.parametrize(
    ("make", "extra", "expected"),
    [
        (lambda root: root / "missing", [], "calibration folder not found"),
        (lambda root: root, [], "no readable image files"),
        (lambda root: root, ["--calibration-images", "0"], "use at least 1"),
    ],
    ids=["missing-folder", "no-images", "zero-images"],
)
def test_int8_calibration_errors_are_one_line(
    make,
    extra: list[str],
    expected: str,
    trained_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpeg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "int8.onnx"
    assert main(["export", str(trained_model), str(out), "--int8", str(make(tmp_path)), *extra]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert expected in line and not out.exists()


def test_int8_without_onnxruntime_says_what_to_install(
    trained_model: Path, synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    out = tmp_path / "int8.onnx"
    with pytest.raises(PneumoscanError, match=r"pip install 'pneumoscan\[onnx\]'"):
        export_onnx(trained_model, out, int8_calibration=synthetic_data / "train", calibration_images=4)
    assert not out.exists()
