"""Real two-process DDP trainings on CPU (gloo), launched the way a user launches them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from pneumoscan.model_file import read_meta
from pneumoscan.synthetic import make_synthetic_dataset


def train_with_two_processes(tmp_path: Path, batch_size: int) -> tuple[subprocess.CompletedProcess, Path]:
    """``pneumoscan train --devices 2 --strategy ddp`` on 16 small films per class, at most 4 steps."""
    data = make_synthetic_dataset(tmp_path / "data", {"train": 16}, size=48) / "train"
    config = tiny_config().with_overrides(
        [
            'model.options={"widths": [8, 16]}',
            "preprocess.image_size=32",
            "augment.enabled=false",
            f"train.batch_size={batch_size}",
            "train.max_epochs=1",
        ]
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "pneumoscan", "train", "--data", str(data), "--out", str(run_dir)]
    command += ["--config", str(config_file), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    command += ["--set", "train.max_steps=4", "--quiet"]
    env = {**os.environ, "PNEUMOSCAN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK"):
        env.pop(name, None)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"DDP training did not finish in {exc.timeout} s:\n{exc.stderr}")
    assert "Traceback" not in done.stderr
    return done, run_dir


def last_step(run_dir: Path) -> int:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(checkpoint["global_step"])


def test_two_process_ddp_keeps_the_replicas_identical(tmp_path: Path) -> None:
    done, run_dir = train_with_two_processes(tmp_path, batch_size=4)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ddp_max_weight_difference"] < 1e-6  # all-gathered from both processes
    # each process draws its own half of the training images (DistributedSampler): fewer steps than alone
    per_process = math.ceil(summary["train_images"] / 2)
    steps = last_step(run_dir)
    assert steps == min(4, per_process // 4) < min(4, summary["train_images"] // 4)
    meta = read_meta(run_dir / "model.safetensors")
    assert (
        meta.config is not None and meta.config.train.strategy == "ddp" and meta.config.train.devices == "2"
    )
    assert done.stdout.count("model: ") == 1  # only rank 0 writes the model and reports


def test_ddp_with_fewer_images_than_a_batch_per_process_still_trains(tmp_path: Path) -> None:
    """Over the whole data one batch would fit, but each process holds only half: the batch shrinks."""
    done, run_dir = train_with_two_processes(tmp_path, batch_size=20)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    images, share = summary["train_images"], math.ceil(summary["train_images"] / 2)
    assert share < 20 < images  # before, drop_last left each process no batch at all: 0 steps
    warning = (
        f"only {images} training images for a batch of 20 x 2 processes; training with batches of {share}"
    )
    assert done.stderr.count(warning) == 1  # said once, by the first process
    assert last_step(run_dir) == 1
    assert read_meta(run_dir / "model.safetensors").config.train.batch_size == share  # type: ignore[union-attr]
