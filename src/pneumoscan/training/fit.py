"""``pneumoscan train``: fit a model on a data folder and write a complete run directory.

RUN_DIR holds ``config.json`` (written first, so ``--resume`` can continue), ``checkpoints/``
(``last.ckpt`` every epoch, ``best.ckpt`` by validation loss), ``logs/metrics.csv`` (Lightning's
log), ``history.csv`` (one row per epoch), ``summary.json``, plots and the final ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger

from pneumoscan.atomic import atomic_write_text
from pneumoscan.config import Config
from pneumoscan.data.datamodule import XrayDataModule
from pneumoscan.engines.torch_engine import TorchEngine, load_network, network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.hardware import lightning_precision
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.predict import Predictor
from pneumoscan.training.calibration import choose_threshold, fit_temperature
from pneumoscan.training.module import XrayClassifier

MODEL_FILE = "model.safetensors"


@dataclass
class TrainResult:
    """Where the run went and what it measured on the validation split."""

    run_dir: Path
    model_path: Path | None
    metrics: dict[str, Any]
    history: pd.DataFrame


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: Config | None = None,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on ``data_dir`` into ``out_dir``; with ``resume`` continue from ``out_dir``'s last checkpoint."""
    run_dir = Path(out_dir)
    config = _prepare_run_dir(run_dir, config, resume)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = XrayDataModule(data_dir, config, progress)
    data.prepare_data()
    n_normal, n_pneumonia = data.class_counts()
    pos_weight = n_normal / n_pneumonia if config.train.class_weighted_loss else None
    module = XrayClassifier(config.model_dump(), pos_weight)
    if init_from is not None and not resume:
        _init_weights(module, init_from, config)
    trainer = L.Trainer(
        max_epochs=config.train.max_epochs,
        max_steps=config.train.max_steps,
        accelerator=config.train.accelerator,
        devices=_devices(config.train.devices),
        num_nodes=config.train.num_nodes,
        strategy=config.train.strategy,
        precision=lightning_precision(config.train.precision, config.train.accelerator),  # type: ignore[arg-type]
        callbacks=_callbacks(run_dir, config, progress),
        logger=CSVLogger(run_dir, name="logs", version=""),
        enable_progress_bar=progress,
        enable_model_summary=progress,
        log_every_n_steps=10,
        deterministic=False,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume and last.exists() else None)
    seconds = time.perf_counter() - started
    agreement = _weight_agreement(module, trainer)
    if not trainer.is_global_zero:
        return TrainResult(run_dir, None, {}, pd.DataFrame())
    if config.train.early_stopping_patience and not config.train.ema_decay:
        _restore_best(module, trainer)
    history = _history(run_dir)
    metrics = {
        "train_seconds": round(seconds, 1),
        "epochs": int(trainer.current_epoch),
        "train_images": len(data.dataset("train")),
        "val_images": len(data.dataset("val")),
        "skipped_files": data.skipped,
        **({"ddp_max_weight_difference": agreement} if agreement is not None else {}),
    }
    model_path = _finish(run_dir, module, data, config, metrics)
    _plots(run_dir, data, history)
    return TrainResult(run_dir, model_path, metrics, history)


def _prepare_run_dir(run_dir: Path, config: Config | None, resume: bool) -> Config:
    saved = run_dir / "config.json"
    if resume:
        if not saved.exists():
            raise PneumoscanError(
                f"{run_dir}: nothing to resume (no config.json); start a run without --resume"
            )
        return Config.load(saved)
    if (run_dir / MODEL_FILE).exists() or (run_dir / "checkpoints").exists():
        raise PneumoscanError(
            f"{run_dir}: already holds a run; use --resume to continue it or choose a new --out"
        )
    config = config or Config()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, config.to_json())
    return config


def _devices(devices: str) -> int | str:
    return int(devices) if devices.isdigit() else devices


def _callbacks(run_dir: Path, config: Config, progress: bool) -> list[Callback]:
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="best", monitor="val_loss", save_last=True, save_top_k=1
        ),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if config.train.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience))
    if config.train.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=config.train.ema_decay))
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    return callbacks


def _init_weights(module: XrayClassifier, init_from: str | Path, config: Config) -> None:
    meta, net = load_network(init_from)
    if meta.model != config.model or meta.preprocess != config.preprocess:
        raise PneumoscanError(
            f"{init_from}: was trained as {meta.model.architecture} on {meta.preprocess.image_size}px input; "
            "fine-tune with the same architecture and preprocessing (e.g. --recipe or --config of that model)"
        )
    module.net.load_state_dict(net.state_dict())


def _restore_best(module: XrayClassifier, trainer: L.Trainer) -> None:
    """Keras' ``restore_best_weights``: go back to the epoch with the lowest validation loss."""
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "")
    if best and os.path.exists(best):
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)


def _weight_agreement(module: XrayClassifier, trainer: L.Trainer) -> float | None:
    """Largest difference of any weight between processes (DDP keeps them identical)."""
    if trainer.world_size < 2:
        return None
    flat = torch.cat([p.detach().float().flatten() for p in module.net.parameters()])
    gathered = trainer.strategy.all_gather(flat)
    return float((gathered - gathered[0]).abs().max())


def _history(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "logs" / "metrics.csv"
    if not path.exists():
        return pd.DataFrame()
    raw = pd.read_csv(path)
    history = raw.groupby("epoch").first().reset_index() if "epoch" in raw else raw
    history.to_csv(run_dir / "history.csv", index=False)
    return history


def _finish(
    run_dir: Path, module: XrayClassifier, data: XrayDataModule, config: Config, metrics: dict[str, Any]
) -> Path:
    """Calibrate on validation, measure it, and write the model file and summary."""
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config)
    engine = TorchEngine(meta, module.net.cpu().float(), config.train.precision)
    val = data.dataset("val")
    logits = Predictor(engine).logits(np.asarray(val.pixels))
    temperature = fit_temperature(logits, val.labels) if config.calibration.temperature_scaling else 1.0
    probs = 1.0 / (1.0 + np.exp(-logits / temperature))
    threshold, rule = choose_threshold(probs, val.labels, config.calibration)
    metrics["validation"] = binary_metrics(val.labels.astype(int), probs, threshold)
    meta = meta.model_copy(
        update={
            "threshold": threshold,
            "threshold_rule": rule,
            "temperature": temperature,
            "metrics": metrics,
        }
    )
    path = save_model(run_dir / MODEL_FILE, network_tensors(module.net), meta)
    atomic_write_text(run_dir / "summary.json", json.dumps(metrics, indent=2, default=str))
    return path


def _plots(run_dir: Path, data: XrayDataModule, history: pd.DataFrame) -> None:
    if data.manifest is not None:
        plots.class_distribution(data.manifest, run_dir / "class_distribution.png")
        plots.sample_grid(data.manifest[data.manifest["readable"]], run_dir / "samples.png")
    if not history.empty:
        plots.learning_curves(history, run_dir / "learning_curves.png")
