"""``pneumoscan import-keras``: the notebook's Keras files give Keras's own probabilities.

The fixtures in ``tests/fixtures/`` were written by Keras 3 with ``scripts/make_keras_fixture.py``:
a narrow network of the notebook's layers at 160 px (3x3 last feature map, so the Flatten order
matters), random BatchNorm statistics, saved as ``.h5`` and ``.keras``, and Keras's probabilities
on fixed images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.engines.torch_engine import TorchEngine, load_network
from pneumoscan.errors import ModelFileError
from pneumoscan.keras_import import import_keras
from pneumoscan.predict import Predictor

h5py = pytest.importorskip("h5py")

FIXTURES = Path(__file__).parent / "fixtures"
OUTPUTS = np.load(FIXTURES / "keras-seed-outputs.npz")


@pytest.fixture(scope="module", params=["keras-seed.h5", "keras-seed.keras"])
def imported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_keras(FIXTURES / request.param, tmp_path_factory.mktemp("keras") / "model.safetensors")


def test_network_gives_keras_probabilities(imported: Path) -> None:
    _, net = load_network(imported)
    x = torch.from_numpy(OUTPUTS["rgb"]).permute(0, 3, 1, 2).float() / 255  # distinct channels
    with torch.no_grad():
        probabilities = torch.sigmoid(net(x)).numpy()
    np.testing.assert_allclose(probabilities, OUTPUTS["rgb_probabilities"], atol=1e-5)


def test_predictor_gives_keras_probabilities(imported: Path) -> None:
    predictor = Predictor(TorchEngine.load(imported, precision="32"))  # fp32 as Keras
    np.testing.assert_allclose(
        predictor.probabilities(OUTPUTS["gray"]), OUTPUTS["gray_probabilities"], atol=1e-5
    )


def test_model_file_describes_the_notebook(imported: Path) -> None:
    meta = Predictor.load(imported).meta
    assert meta.model.architecture == "seed-cnn"
    assert meta.model.options == {"widths": [4, 8, 8, 8, 16], "dense": [8, 4]}
    assert (meta.preprocess.image_size, meta.preprocess.channels) == (160, 3)
    assert (meta.preprocess.crop_fraction, meta.preprocess.normalization) == (1.0, "none")
    assert (meta.threshold, meta.temperature) == (0.5, 1.0)
    assert "Keras" in meta.name and "keras-seed." in meta.name
    assert meta.config is not None and meta.config.recipe == "seed"


def test_cli_import_then_predict_with_heat_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "notebook.safetensors"
    assert main(["import-keras", str(FIXTURES / "keras-seed.h5"), "--out", str(out)]) == 0
    film = tmp_path / "film.png"
    Image.fromarray(OUTPUTS["gray"][0]).save(film)
    capsys.readouterr()
    assert main(["predict", str(out), str(film), "--json", "--explain", str(tmp_path / "maps")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert abs(row["probability"] - OUTPUTS["gray_probabilities"][0]) < 0.02  # bf16 where native
    assert Path(row["heatmap_path"]).is_file()


def _with_config(tmp_path: Path, name: str, edit: dict[str, str]) -> Path:
    """A copy of the .h5 fixture whose Keras config has layer ``name`` changed (``class_name`` or fields)."""
    path = tmp_path / "other.h5"
    shutil.copy(FIXTURES / "keras-seed.h5", path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        (layer,) = [lay for lay in config["config"]["layers"] if lay["config"]["name"] == name]
        layer["class_name"] = edit.pop("class_name", layer["class_name"])
        layer["config"].update(edit)
        handle.attrs["model_config"] = json.dumps(config)
    return path


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "conv2d_1",
            {"padding": "same"},
            "layer 4 'conv2d_1' (Conv2D) does not match the notebook's seed-cnn: expected block 2's "
            "Conv2D 3x3 valid (ReLU), found padding 'same'",
        ),
        (
            "flatten",
            {"class_name": "GlobalAveragePooling2D"},
            "layer 19 'flatten' (GlobalAveragePooling2D) does not match the notebook's seed-cnn: "
            "expected Flatten, found a GlobalAveragePooling2D layer",
        ),
        (
            "dense_2",
            {"activation": "softmax"},
            "layer 24 'dense_2' (Dense) does not match the notebook's seed-cnn: expected Dense layer 3 "
            "(sigmoid), found activation 'softmax'",
        ),
    ],
)
def test_other_architecture_names_the_first_layer_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, edit: dict[str, str], message: str
) -> None:
    path = _with_config(tmp_path, name, edit)
    assert main(["import-keras", str(path), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("name", ["keras-seed.h5", "keras-seed.keras"])
def test_truncated_file_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes((FIXTURES / name).read_bytes()[:30000])
    with pytest.raises(ModelFileError, match=rf"{name}: .*(damaged|not a)"):
        import_keras(path, tmp_path / "m.safetensors")


def test_non_keras_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as handle:
        handle.attrs["layer_names"] = ["conv2d"]
    for path, reason in [
        (text, "not a Keras .h5 or .keras model file"),
        (weights_only, "holds weights only"),
        (tmp_path / "missing.h5", "not found"),
    ]:
        assert main(["import-keras", str(path), "--out", str(tmp_path / "m.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and reason in err, err
