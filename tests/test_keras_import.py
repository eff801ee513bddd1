"""``pneumoscan import-keras``: the notebook's Keras files give Keras's own probabilities.

The fixtures in ``tests/fixtures/`` were written by Keras 3 with ``scripts/make_keras_fixture.py``:
a narrow network of the notebook's layers at 160 px (3x3 last feature map, so the Flatten order
matters), random BatchNorm statistics, saved as ``.h5`` and ``.keras``, and Keras's probabilities
on fixed images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _with_layers(tmp_path: Path, edit: Callable[[list[Any]], None]) -> Path:
    """A copy of the .h5 fixture whose list of Keras layer configs ``edit`` changed in place."""
    path = tmp_path / "edited.h5"
    shutil.copy(FIXTURES / "keras-seed.h5", path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config["config"]["layers"])
        handle.attrs["model_config"] = json.dumps(config)
    return path


def _first(kind: str) -> Callable[[list[Any]], dict[str, Any]]:
    return lambda layers: next(layer for layer in layers if layer["class_name"] == kind)["config"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda layers: layers.__setitem__(1, 5), "layer 1 of its Keras model config is malformed"),
        (
            lambda layers: layers[1].__setitem__("config", [1]),
            "layer 1 of its Keras model config is malformed",
        ),
        (lambda layers: _first("Conv2D")(layers).update(filters="abc"), "found filters 'abc'"),
        (lambda layers: _first("Conv2D")(layers).update(kernel_size={"a": 1}), "found kernel_size {'a': 1}"),
        (lambda layers: _first("Dense")(layers).update(units=None), "found units None"),
        (lambda layers: layers[0]["config"].update(batch_shape=[None, "a", "a", 3]), "input shape"),
        (lambda layers: layers[0]["config"].update(batch_shape=7), "input shape 7"),
    ],
)
def test_malformed_keras_configs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[list[Any]], None], message: str
) -> None:
    path = _with_layers(tmp_path, edit)
    assert main(["import-keras", str(path), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err, err


def _peak_memory_of_import(path: Path, out: Path) -> tuple[str, int]:
    """(error line, peak resident MiB) of ``import_keras`` in a fresh process."""
    code = (
        "import resource, sys\n"
        "from pneumoscan.errors import ModelFileError\n"
        "from pneumoscan.keras_import import import_keras\n"
        "try:\n"
        f"    import_keras({str(path)!r}, {str(out)!r})\n"
        "except ModelFileError as exc:\n"
        "    print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    *lines, peak = done.stdout.splitlines()
    return " ".join(lines), int(peak)


def test_h5_weight_declaring_gigabytes_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge-weight.h5"
    shutil.copy(FIXTURES / "keras-seed.h5", path)
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights"]["conv2d"]
        name = next(n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"])
        del group[name]  # a chunked dataset of 2 GiB that holds no chunks: the file stays small
        group.create_dataset(name, shape=(3, 3, 3, 2**26 // 27 * 8), dtype="f4", chunks=(3, 3, 3, 1024))
    assert path.stat().st_size < 200_000
    line, peak = _peak_memory_of_import(path, tmp_path / "m.safetensors")
    assert "layer 'conv2d' declares its kernel as (3, 3, 3," in line and str(path) in line
    assert peak < 1024  # MiB: torch and h5py themselves, not the 2 GiB the file claims


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_keras_zip_members_declaring_more_than_the_model_needs_are_refused(
    tmp_path: Path, member: str
) -> None:
    path = tmp_path / "padded.keras"
    with (
        zipfile.ZipFile(FIXTURES / "keras-seed.keras") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename == member:  # 64 MiB of padding (JSON whitespace; bytes past HDF5's end)
                with out.open(member, "w", force_zip64=True) as handle:
                    handle.write(data)
                    for _ in range(64):
                        handle.write(b" " * 2**20)
            else:
                out.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    line, peak = _peak_memory_of_import(path, tmp_path / "m.safetensors")
    assert f"its {member} declares" in line and str(path) in line
    assert peak < 1024
