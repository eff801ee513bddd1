"""Small output errors: what inspect, evaluate, serve, predict and export print in edge cases."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.evaluation.groups import group_entry
from pneumoscan.evaluation.metrics import MIN_FILMS, binary_metrics
from pneumoscan.serve.uploads import Upload, UploadArchive


def _film(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((64, 64), value, np.uint8)
    pixels[::3] = 255 - value
    Image.fromarray(pixels).save(path)
    return path


def test_inspect_without_normal_films_gives_no_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        _film(tmp_path / "data" / "PNEUMONIA" / f"person{i}_virus_1.png", 40 * i)
    assert main(["inspect", str(tmp_path / "data"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "class imbalance: only one class, no NORMAL or OTHER images" in out and "per NORMAL" not in out


def test_headline_and_groups_share_the_rule_for_a_roc_auc() -> None:
    labels, probabilities = np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9])
    assert binary_metrics(labels, probabilities, 0.5)["roc_auc"] is None
    assert group_entry(labels, probabilities, np.arange(3), 0.5)["roc_auc"] is None
    labels = np.tile([0, 1], MIN_FILMS // 2)
    assert binary_metrics(labels, labels * 0.8 + 0.1, 0.5)["roc_auc"] == 1.0


def test_the_uploads_cap_is_said_in_mib(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = UploadArchive(tmp_path / "kept", max_bytes=2**20)
    assert archive.save(Upload("a.png", bytes(600_000))) is not None
    with caplog.at_level(logging.WARNING, logger="pneumoscan.serve"):
        assert archive.save(Upload("b.png", bytes(600_000))) is None
    assert "holds 0.6 MiB; with this upload it would pass its cap of 1 MiB" in caplog.text


def test_a_fifo_as_model_is_not_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    film = _film(tmp_path / "film.png", 100)
    for argv in (["predict", str(fifo), str(film)], ["info", str(fifo)]):
        assert main(argv) == 2
        assert f"{fifo}: is not a regular file" in capsys.readouterr().err


def test_export_prints_no_torchvision_warnings(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    out = tmp_path / "bundled.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "pneumoscan", "export", "bundled", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torchvision" not in done.stderr and out.exists()
