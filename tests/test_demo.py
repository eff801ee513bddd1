"""What a newcomer sees: the demo's folder, a quiet log, and a synthetic model that says what it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config

from pneumoscan.cli import main
from pneumoscan.model_file import read_meta
from pneumoscan.synthetic import is_synthetic

NOISE = ("\x1b", "\r", "litlogger", "Tip:", "Total params", "GPU available")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``pneumoscan demo`` run as a user would, its output going to a log file (not a terminal)."""
    out = tmp_path_factory.mktemp("demo") / "pneumoscan-demo"
    log = out.parent / "demo.log"
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "pneumoscan", "demo", "--out", str(out)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            timeout=600,
            check=False,
        )
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    return out, text


def test_demo_writes_a_report_and_heat_maps(demo: tuple[Path, str]) -> None:
    out, text = demo
    report = out / "report.html"
    assert report.is_file() and "<h1>pneumoscan report" in report.read_text(encoding="utf-8")
    heatmaps = sorted((out / "heatmaps").glob("*_heatmap.png"))
    assert heatmaps and all(path.stat().st_size > 0 for path in heatmaps)
    assert f"report: {report}" in text and str(heatmaps[0]) in text


def test_demo_log_file_is_plain(demo: tuple[Path, str]) -> None:
    """No progress-bar escape codes, carriage returns, Lightning tips or model summary: one line per epoch."""
    _, text = demo
    for noise in NOISE:
        assert noise not in text, noise
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epochs) >= 2 and epochs[0].startswith("epoch 1/12  train_loss ") and "val_loss" in epochs[0]


def test_demo_model_says_it_is_synthetic_and_predict_warns(
    demo: tuple[Path, str], capfd: pytest.CaptureFixture[str]
) -> None:
    out, text = demo
    assert is_synthetic(out / "data") and is_synthetic(out / "data" / "train")
    (model,) = out.glob("run-*/model.safetensors")
    assert read_meta(model).synthetic_data is True
    assert "trained on synthetic shapes" in text
    film = next((out / "data" / "test" / "NORMAL").glob("*.jpeg"))
    for _ in range(2):  # on each use
        assert main(["predict", str(model), str(film)]) == 0
        err = capfd.readouterr().err
        assert "pneumoscan: warning:" in err and "synthetic shapes" in err


def test_training_prints_the_model_summary_only_when_asked(
    synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``train --model-summary`` shows the table; output off a terminal still has no escape codes."""
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config().to_json())
    args = ["train", "--data", str(synthetic_data / "train"), "--out", str(tmp_path / "run")]
    assert main([*args, "--config", str(config), "--epochs", "2", "--model-summary"]) == 0
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "Total params" in text and "\x1b" not in text and "\r" not in text and "litlogger" not in text
    assert [line[:9] for line in text.splitlines() if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert read_meta(tmp_path / "run" / "model.safetensors").synthetic_data is True
