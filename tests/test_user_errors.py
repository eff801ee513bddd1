"""User mistakes and a full disk end in one line naming the file or setting, and exit status 2."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import study_header, write_dicom
from safetensors.numpy import save_file

from pneumoscan.cli import main
from pneumoscan.errors import OutputError
from pneumoscan.synthetic import make_synthetic_dataset
from pneumoscan.training.run_dir import AtomicCheckpointIO

TINY_TRAIN = [
    "--recipe",
    "default",
    "--set",
    "preprocess.image_size=32",
    "--set",
    "gate.generated_negatives=16",
    "--set",
    'train.precision="32"',
    "--epochs",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("tiny"), {"train": 10}) / "train"


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pneumoscan: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--strategy", "bogus"], ["strategy 'bogus'", "--strategy"]),
        (["--set", "model.options.widths=[100000,2,2,2]"], ["parameters, over the limit"]),
        (["--set", "model.options.widths=[]"], ["widths must be a list"]),
        (["--set", "model.options.widths=[4,-2]"], ["widths must be positive integers"]),
    ],
)
def test_train_settings_are_checked_before_any_data_is_read(
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    fragments: list[str],
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *TINY_TRAIN, *flags]) == 2
    _one_line_error(capsys, *fragments)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_on_a_gpu_this_machine_lacks(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *TINY_TRAIN]
    assert main([*argv, "--accelerator", "gpu"]) == 2
    _one_line_error(capsys, "accelerator 'gpu'", "--accelerator")


def test_outputs_where_a_file_is_in_the_way(
    tiny_data: Path, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    film = str(next(tiny_data.rglob("*.jpeg")))
    for argv in (
        ["train", "--data", str(tiny_data), "--out", str(a_file), *TINY_TRAIN],
        ["inspect", str(tiny_data), "--plots", str(a_file), "--quiet"],
        ["demo", "--out", str(a_file)],
        ["predict", film, "--explain", str(a_file)],
    ):
        assert main(argv) == 2, argv
        _one_line_error(capsys, str(a_file), "give a folder")
    assert main(["predict", film, "--csv", str(tmp_path)]) == 2
    _one_line_error(capsys, str(tmp_path), "give a file name")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-megapixels", "nan"),
        ("--max-upload-mb", "inf"),
        ("--max-in-flight", "0"),
        ("--header-timeout", "-1"),
    ],
)
def test_serve_limits_must_be_finite_and_positive(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "above 0" in err and "Traceback" not in err


def test_deeply_nested_model_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "nested.safetensors"
    nested = '{"format": "pneumoscan-model", "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}"
    save_file({"w": np.zeros(1, np.float32)}, str(model), metadata={"pneumoscan": nested})
    assert main(["info", str(model)]) == 2
    _one_line_error(capsys, str(model), "nested too deeply")
    config = tmp_path / "nested.json"
    config.write_text("[" * 100_000 + "]" * 100_000)
    assert (
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    )
    _one_line_error(capsys, str(config), "nested too deeply")


# -- a full disk (item 7): one line naming the file, exit 2 -------------------------------------------


@pytest.fixture
def film(tmp_path: Path) -> Path:
    pixels = (np.random.default_rng(0).random((128, 128)) * 4000).astype(np.uint16)
    return write_dicom(tmp_path / "film.dcm", pixels, header=study_header("1.2.3.4", 1))


def test_predict_table_on_a_full_disk(
    full_disk: Path, film: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = full_disk / "out.csv"
    assert main(["predict", str(film), "--no-refuse", "--csv", str(table)]) == 2
    _one_line_error(capsys, str(table), "No space left on device")


def test_dicom_results_on_a_full_disk(
    small_disk: Path, film: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SR fits in what is left, the heat-map Secondary Capture does not: pydicom fails half-way
    through it and re-raises with a traceback in its message."""
    (small_disk / "filler").write_bytes(bytes(180 * 1024))
    out = small_disk / "dicom"
    assert main(["predict", str(film), "--no-refuse", "--dicom-out", str(out), "--heatmaps"]) == 2
    line = _one_line_error(capsys, str(out), "No space left on device")
    assert "filewriter" not in line and "With tag" not in line
    assert not list(small_disk.rglob("*.tmp"))


def test_checkpoints_are_written_beside_their_destination(
    full_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-folder"))
    checkpoint = {"state_dict": {"w": torch.zeros(100_000)}, "epoch": 0}
    writer = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    writer.save_checkpoint(checkpoint, target)  # Lightning's own writer goes through the temp folder
    assert torch.load(target, weights_only=True)["epoch"] == 0
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    with pytest.raises(OutputError, match=r"last\.ckpt: cannot write \(No space left on device\)"):
        writer.save_checkpoint(checkpoint, full_disk / "checkpoints" / "last.ckpt")
    assert list((full_disk / "checkpoints").iterdir()) == []


def test_train_on_a_full_disk(tiny_data: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = small_disk / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *TINY_TRAIN]) == 2
    _one_line_error(capsys, str(out / "checkpoints"), ".ckpt: cannot write (No space left on device)")


def test_export_on_a_full_disk(full_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxscript")
    out = full_disk / "model.onnx"
    assert main(["export", "bundled", str(out)]) == 2
    _one_line_error(capsys, str(out), "No space left on device")
    assert [p.name for p in full_disk.iterdir()] == ["filler"]
