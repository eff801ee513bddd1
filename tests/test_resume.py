"""``train --resume`` after an interruption, and refusing to overwrite an existing run."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from conftest import tiny_config
from lightning.pytorch.callbacks import Callback

from pneumoscan.cli import main
from pneumoscan.config import Config
from pneumoscan.synthetic import make_synthetic_dataset
from pneumoscan.training import fit


def small_config(max_epochs: int) -> Config:
    """A narrow network on 32 px input without augmentation: a few seconds per epoch."""
    return tiny_config().with_overrides(
        [
            'model.options={"widths": [8, 16]}',
            "preprocess.image_size=32",
            "augment.enabled=false",
            "train.batch_size=8",
            f"train.max_epochs={max_epochs}",
        ]
    )


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("resume-data"), {"train": 16}, size=48) / "train"


class EpochRecorder(Callback):
    """Records the epochs trained; optionally raises KeyboardInterrupt (Ctrl+C) when ``stop_at`` starts."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.stop_at:
            raise KeyboardInterrupt
        self.epochs.append(trainer.current_epoch)


_CALLBACKS = fit._callbacks


def add_callback(monkeypatch: pytest.MonkeyPatch, callback: Callback) -> None:
    """Make the next ``train`` runs use ``callback`` besides their own callbacks."""
    monkeypatch.setattr(fit, "_callbacks", lambda *args: [*_CALLBACKS(*args), callback])


def test_resume_after_interruption(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    config_file = tmp_path / "config.json"
    config_file.write_text(small_config(max_epochs=4).to_json())
    base = ["train", "--data", str(small_data), "--out", str(run_dir), "--quiet"]

    interrupted = EpochRecorder(stop_at=2)
    add_callback(monkeypatch, interrupted)
    code = main([*base, "--config", str(config_file)])
    err = capfd.readouterr().err
    assert interrupted.epochs == [0, 1]
    assert code == 130
    assert err.strip().splitlines() == [
        "pneumoscan: interrupted (continue a training run with: "
        "pneumoscan train --data DATA --out RUN --resume)"
    ]
    assert not (run_dir / "model.safetensors").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 1
    steps_per_epoch = checkpoint["global_step"] // 2
    assert steps_per_epoch > 0

    resumed = EpochRecorder()
    add_callback(monkeypatch, resumed)
    code = main(["train", "--out", str(run_dir), "--quiet", "--resume"])  # the data come from config.json
    out, err = capfd.readouterr()
    assert code == 0, err
    assert resumed.epochs == [2, 3]  # continued, not restarted
    assert "model:" in out and "4 epochs" in out
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 4 * steps_per_epoch
    assert (run_dir / "model.safetensors").is_file()
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["val_loss"].notna().all() and history["train_loss"].notna().all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 4
    recorded = f"data.sources={json.dumps([str(small_data)])}"
    assert Config.load(run_dir / "config.json") == small_config(max_epochs=4).with_overrides([recorded])


def test_existing_run_dir_is_refused_without_resume(
    small_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    config_file = tmp_path / "config.json"
    config_file.write_text(small_config(max_epochs=1).to_json())
    base = ["train", "--data", str(small_data), "--out", str(run_dir), "--config", str(config_file)]
    base.append("--quiet")
    assert main(base) == 0
    capfd.readouterr()
    model_bytes = (run_dir / "model.safetensors").read_bytes()

    assert main(base) == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"pneumoscan: error: {run_dir}: already holds a run")
    assert "--resume" in err and "Traceback" not in err
    assert (run_dir / "model.safetensors").read_bytes() == model_bytes  # untouched


def test_resume_without_a_run_is_refused(
    small_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "empty"
    assert main(["train", "--data", str(small_data), "--out", str(run_dir), "--resume", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [
        f"pneumoscan: error: {run_dir}: nothing to resume (no config.json); start a run without --resume"
    ]
