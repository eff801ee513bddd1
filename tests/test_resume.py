"""``train --resume`` after an interruption, the run folder's lock, and refusing to overwrite a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1
    first_part_seconds = checkpoint["callbacks"]["RunClock"]["seconds"]
    steps_per_epoch = checkpoint["global_step"] // 2
    assert steps_per_epoch > 0

    resumed = EpochRecorder()
    add_callback(monkeypatch, resumed)
    code = main(["train", "--out", str(run_dir), "--quiet", "--resume"])  # the data come from config.json
    out, err = capfd.readouterr()
    assert code == 0, err
    assert f"pneumoscan: resuming {run_dir} after epoch 2 of 4" in err.splitlines()
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
    assert summary["train_seconds"] > first_part_seconds  # both parts of the run, not the last alone
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


def test_resume_needs_a_usable_checkpoint(
    small_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(small_config(max_epochs=1).to_json())
    resume = ["train", "--data", str(small_data), "--out", str(run_dir), "--resume", "--quiet"]
    assert main(resume) == 2
    [line] = capfd.readouterr().err.splitlines()
    assert line.startswith(f"pneumoscan: error: {run_dir}: nothing to resume (no checkpoints/last.ckpt")
    assert not (run_dir / "model.safetensors").exists()  # no fresh run in its place

    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    for content, words in (
        (b"", "the checkpoint is empty"),
        (b"PK\x03\x04 cut", "the checkpoint is damaged or truncated"),
    ):
        last.write_bytes(content)
        assert main(resume) == 2
        [line] = capfd.readouterr().err.splitlines()
        assert line.startswith(f"pneumoscan: error: {last}: {words}"), line


def test_config_is_written_only_after_the_data_is_checked(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    missing = tmp_path / "no-data"
    assert main(["train", "--data", str(missing), "--out", str(run_dir), "--quiet"]) == 2
    assert str(missing) in capfd.readouterr().err
    assert not run_dir.exists()  # not even config.json: a later --resume cannot mistake it for a run


def test_a_run_folder_is_used_by_one_run_at_a_time(
    small_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid %d on test' % os.getpid()); "
        "print('locked', flush=True); time.sleep(120)"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", holder, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "locked"
        config_file = tmp_path / "config.json"
        config_file.write_text(small_config(max_epochs=1).to_json())
        train = ["train", "--data", str(small_data), "--out", str(run_dir), "--config", str(config_file)]
        assert main([*train, "--quiet"]) == 2
        [line] = capfd.readouterr().err.splitlines()
        assert line == (
            f"pneumoscan: error: {run_dir}: another training run (pid {other.pid} on test) is using this "
            "folder; wait for it to finish or choose another --out"
        )
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing of the run was touched
    finally:
        os.kill(other.pid, signal.SIGKILL)  # dies holding the lock: the kernel releases it
        other.wait()
    assert main([*train, "--quiet"]) == 0  # a lock left by a killed run is not stale
    assert (run_dir / "model.safetensors").is_file()


def test_fewer_images_than_one_batch_shrink_the_batch(
    small_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    config = small_config(max_epochs=2).with_overrides(["train.batch_size=64"])
    result = fit.train(small_data, run_dir, config, progress=False)
    err = capfd.readouterr().err
    images = result.metrics["train_images"]
    assert images < 64
    assert f"pneumoscan: warning: only {images} training images for a batch of 64; " in err
    assert f"training with batches of {images} instead" in err
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2  # one full batch per epoch
    assert Config.load(run_dir / "config.json").train.batch_size == images  # the run says what it did
