"""``pneumoscan train``: fit a model on one or several data sources and write a complete run directory.

The sources (data folders, labels CSVs; each a site) are recorded in the config as
``data.sources``. RUN_DIR holds ``config.json`` (written once the data is checked),
``checkpoints/`` (``last.ckpt`` every epoch, ``best.ckpt`` by ``train.monitor``: the validation
loss, or the worst or mean per-site validation ROC-AUC), ``logs/metrics.csv`` (Lightning's
log; the parts logged before each ``--resume`` are kept as ``logs/metrics-partNN.csv``),
``history.csv`` (one row per epoch of all parts), ``summary.json``, plots and the final
``model.safetensors``.  A run locks its folder while it trains (:mod:`pneumoscan.training.run_dir`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
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
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn

from pneumoscan.atomic import atomic_write_text
from pneumoscan.calibration import calibrated, choose_threshold, fit_temperature, ood_scores
from pneumoscan.classes import present_classes
from pneumoscan.config import Config
from pneumoscan.data.datamodule import XrayDataModule
from pneumoscan.engines.torch_engine import TorchEngine, load_network, network_tensors
from pneumoscan.errors import DataError, PneumoscanError, os_error
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.evaluation.other import other_metrics
from pneumoscan.hardware import lightning_precision
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.model_source import resolve_model
from pneumoscan.models import check_model
from pneumoscan.predict import Predictor
from pneumoscan.progress import live_bars
from pneumoscan.synthetic import is_synthetic
from pneumoscan.training.console import EpochLines, quiet_lightning
from pneumoscan.training.gate import choose_gate
from pneumoscan.training.module import MONITOR_MODES, XrayClassifier
from pneumoscan.training.run_dir import (
    CONFIG_FILE,
    MODEL_FILE,
    AtomicCheckpointIO,
    check_run_dir,
    locked_run_dir,
    read_checkpoint,
)

MIN_BATCH = 2  # BatchNorm needs two images in a training batch


@dataclass
class TrainResult:
    """Where the run went and what it measured on the validation split."""

    run_dir: Path
    model_path: Path | None
    metrics: dict[str, Any]
    history: pd.DataFrame


def train(
    data: str | Path | Sequence[str | Path] | None,
    out_dir: str | Path,
    config: Config | None = None,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
    model_summary: bool = False,
) -> TrainResult:
    """Train on ``data`` into ``out_dir``; with ``resume`` continue from ``out_dir``'s last checkpoint.

    ``data``: a data folder or labels CSV, or a list of them (one site each); ``None`` uses the
    config's ``data.sources``.
    ``progress`` draws progress bars on a terminal and prints one line per epoch elsewhere (a log
    file, a notebook); ``model_summary`` prints Lightning's table of layers first.
    """
    run_dir = Path(out_dir)
    with locked_run_dir(run_dir):
        return _train(data, run_dir, config, resume, init_from, progress, model_summary)


def _train(
    data: str | Path | Sequence[str | Path] | None,
    run_dir: Path,
    config: Config | None,
    resume: bool,
    init_from: str | Path | None,
    progress: bool,
    model_summary: bool,
) -> TrainResult:
    initial = None if init_from is None or resume else _initial_network(init_from, config or Config())
    config, checkpoint_path = check_run_dir(run_dir, _with_sources(config or Config(), data, resume), resume)
    checkpoint = read_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    check_model(config.model, config.preprocess)  # before any data is decoded
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    clock = RunClock()
    if checkpoint is not None:
        _keep_metrics_log(run_dir)
    bars = live_bars(progress, sys.stdout)
    trainer = _trainer(config, run_dir, progress, bars, clock)
    sources = _sources(data) or config.data.sources
    data_module = XrayDataModule(sources, config, progress)
    data_module.prepare_data()
    config = _fit_batch_to_data(config, len(data_module.dataset("train")), trainer)
    data_module.config = config
    if checkpoint is None:
        atomic_write_text(run_dir / CONFIG_FILE, config.to_json())
    else:
        done = checkpoint["epoch"] + 1
        _say(trainer, f"resuming {run_dir} after epoch {done} of {config.train.max_epochs}")
    n_normal, n_pneumonia = data_module.class_counts()
    pos_weight = n_normal / n_pneumonia if config.train.class_weighted_loss else None
    module = XrayClassifier(config.model_dump(), pos_weight, data_module.sites)
    if initial is not None:
        module.net.load_state_dict(initial.state_dict())
    if model_summary:
        print(ModelSummary(module, max_depth=2), flush=True)
    with quiet_lightning():
        checkpoint_arg = str(checkpoint_path) if checkpoint_path is not None else None
        _fit(trainer, module, data_module, checkpoint_arg, run_dir)
    if trainer.global_step == 0:
        raise DataError(
            f"{', '.join(sources)}: training took no optimiser step "
            f"({len(data_module.dataset('train'))} training images, batch {config.train.batch_size}); "
            "add images or lower --batch-size"
        )
    agreement = _weight_agreement(module, trainer)
    if not trainer.is_global_zero:
        return TrainResult(run_dir, None, {}, pd.DataFrame())
    if config.train.early_stopping_patience and not config.train.ema_decay:
        _restore_best(module, trainer)
    history = _history(run_dir)
    metrics = {
        "train_seconds": round(clock.seconds(), 1),
        "epochs": int(trainer.current_epoch),
        "train_images": len(data_module.dataset("train")),
        "val_images": len(data_module.dataset("val")),
        "sites": data_module.sites,
        "skipped_files": data_module.skipped,
        "world_size": trainer.world_size,
        **({"ddp_max_weight_difference": agreement} if agreement is not None else {}),
    }
    model_path = _finish(run_dir, module, data_module, config, metrics, all(map(is_synthetic, sources)))
    _plots(run_dir, data_module, history)
    return TrainResult(run_dir, model_path, metrics, history)


def _trainer(config: Config, run_dir: Path, progress: bool, bars: bool, clock: RunClock) -> L.Trainer:
    """Lightning's Trainer for ``config``; settings it refuses (an accelerator this machine lacks, an
    unknown strategy) are one line naming them."""
    try:
        with quiet_lightning():
            return L.Trainer(
                max_epochs=config.train.max_epochs,
                max_steps=config.train.max_steps,
                accelerator=config.train.accelerator,
                devices=_devices(config.train.devices),
                num_nodes=config.train.num_nodes,
                strategy=config.train.strategy,
                precision=lightning_precision(config.train.precision, config.train.accelerator),  # type: ignore[arg-type]
                callbacks=[*_callbacks(run_dir, config, progress, bars), clock],
                plugins=[AtomicCheckpointIO()],
                logger=CSVLogger(run_dir, name="logs", version=""),
                enable_progress_bar=bars,
                enable_model_summary=False,
                log_every_n_steps=10,
                deterministic=False,
            )
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split()).split(". ")[0][:200]
        raise PneumoscanError(
            f"cannot train with accelerator {config.train.accelerator!r}, devices {config.train.devices!r}, "
            f"strategy {config.train.strategy!r} on this machine ({first}); "
            "check --accelerator, --devices and --strategy"
        ) from exc


def _sources(data: str | Path | Sequence[str | Path] | None) -> list[str]:
    if data is None:
        return []
    return [str(data)] if isinstance(data, str | Path) else [str(source) for source in data]


def _with_sources(config: Config, data: str | Path | Sequence[str | Path] | None, resume: bool) -> Config:
    """``config`` with ``data.sources`` set to ``data`` (when given); refuses a run without any source."""
    if _sources(data):
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"sources": _sources(data)})}
        )
    if not config.data.sources and not resume:
        raise PneumoscanError("no training data: pass --data FOLDER_OR_CSV (repeat it for several sites)")
    return config


class RunClock(Callback):
    """Training time of the whole run: kept in every checkpoint, so a resumed run adds to it."""

    def __init__(self) -> None:
        self.before = 0.0  # seconds of the earlier parts, as of their last checkpoint
        self.started = time.perf_counter()

    def seconds(self) -> float:
        """Seconds trained so far, all parts of the run together."""
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("seconds", 0.0))


def _fit_batch_to_data(config: Config, train_images: int, trainer: L.Trainer) -> Config:
    """The config with a batch no larger than each process's share of the training images.

    With fewer images per process than one batch, the batch is shrunk to that share (and said);
    with fewer than :data:`MIN_BATCH` per process the run is refused.
    """
    world = trainer.world_size
    share = math.ceil(train_images / world)  # DistributedSampler pads every process to this many
    if share < MIN_BATCH:
        raise DataError(
            f"only {train_images} training images for {world} processes; "
            f"each needs at least {MIN_BATCH}: add images or use fewer --devices"
        )
    batch = config.train.batch_size
    if share >= batch:
        if share < 2 * batch and share % batch:
            _say(
                trainer,
                f"warning: {share} training images per process make one batch of {batch} per epoch "
                f"({share % batch} left out each epoch); a smaller --batch-size uses them all",
            )
        return config
    processes = f" x {world} processes" if world > 1 else ""
    _say(
        trainer,
        f"warning: only {train_images} training images for a batch of {batch}{processes}; "
        f"training with batches of {share} instead",
    )
    return config.with_overrides([f"train.batch_size={share}"])


def _say(trainer: L.Trainer, message: str) -> None:
    """One line on stderr, from the first process only."""
    if trainer.is_global_zero:
        print(f"pneumoscan: {message}", file=sys.stderr)


def _devices(devices: str) -> int | str:
    return int(devices) if devices.isdigit() else devices


def _callbacks(run_dir: Path, config: Config, progress: bool, bars: bool) -> list[Callback]:
    checkpoints = run_dir / "checkpoints"
    monitor, mode = config.train.monitor, MONITOR_MODES[config.train.monitor]
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, save_top_k=1),
        # not ``save_last=True``: Lightning then updates last.ckpt only in epochs that improve val_loss
        ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if config.train.early_stopping_patience:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=config.train.early_stopping_patience)
        )
    if config.train.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=config.train.ema_decay))
    if bars:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    elif progress:
        callbacks.append(EpochLines())
    return callbacks


def _initial_network(init_from: str | Path, config: Config) -> nn.Module:
    """The network of the model file to fine-tune, checked against ``config`` before any data is decoded."""
    meta, net = load_network(resolve_model(init_from, "torch").path)
    if meta.model != config.model or meta.preprocess != config.preprocess:
        raise PneumoscanError(
            f"{init_from}: was trained as {meta.model.architecture} on {meta.preprocess.image_size}px input; "
            "fine-tune with the same architecture and preprocessing (e.g. --recipe or --config of that model)"
        )
    return net


@rank_zero_only
def _keep_metrics_log(run_dir: Path) -> None:
    """Lightning's CSVLogger deletes an existing ``metrics.csv``; keep the epochs logged before a resume."""
    log = run_dir / "logs" / "metrics.csv"
    if log.exists():
        parts = len(list(log.parent.glob("metrics-part*.csv")))
        log.rename(log.with_name(f"metrics-part{parts + 1:02d}.csv"))


def _fit(
    trainer: L.Trainer, module: XrayClassifier, data: XrayDataModule, ckpt_path: str | None, run_dir: Path
) -> None:
    """``trainer.fit`` with Ctrl+C surfacing as KeyboardInterrupt.

    Lightning turns KeyboardInterrupt into ``sys.exit(1)`` and ignores SIGINT from then on, which
    would skip the CLI's "resume with --resume" message and leave Ctrl+C dead in a notebook.
    """
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except OSError as exc:  # Lightning's own log files (logs/metrics.csv) on a full disk: name the run
        raise os_error(exc, run_dir) from exc
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt from None
    finally:
        if sigint is not None and signal.getsignal(signal.SIGINT) is not sigint:
            signal.signal(signal.SIGINT, sigint)


def _restore_best(module: XrayClassifier, trainer: L.Trainer) -> None:
    """Keras' ``restore_best_weights``: go back to the best epoch by ``train.monitor``."""
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "")
    if best and os.path.exists(best):
        state = read_checkpoint(Path(best))["state_dict"]
        module.load_state_dict(state)


def _weight_agreement(module: XrayClassifier, trainer: L.Trainer) -> float | None:
    """Largest difference of any weight between processes (DDP keeps them identical)."""
    if trainer.world_size < 2:
        return None
    flat = torch.cat([p.detach().float().flatten() for p in module.net.parameters()])
    gathered = trainer.strategy.all_gather(flat)
    return float((gathered - gathered[0]).abs().max())


def _history(run_dir: Path) -> pd.DataFrame:
    logs = run_dir / "logs"
    parts = [
        pd.read_csv(p) for p in [*sorted(logs.glob("metrics-part*.csv")), logs / "metrics.csv"] if p.exists()
    ]
    if not parts:
        return pd.DataFrame()
    history = pd.concat(parts, ignore_index=True)
    if "epoch" in history:  # the learning rate is logged at the start of an epoch, before its epoch number
        history["epoch"] = history["epoch"].bfill()
        history = history.groupby("epoch").first().reset_index().astype({"epoch": int})
    atomic_write_text(run_dir / "history.csv", history.to_csv(index=False))
    return history


def _finish(
    run_dir: Path,
    module: XrayClassifier,
    data: XrayDataModule,
    config: Config,
    metrics: dict[str, Any],
    synthetic: bool,
) -> Path:
    """Calibrate on validation, set the gate's threshold, measure both, write the model file and summary.

    The validation films are those the run uses (NORMAL, PNEUMONIA and, unless
    ``data.ambiguous_other`` is ``negative``, clear OTHER films as negatives); OTHER films are also
    measured apart (``validation_other``: the fraction called PNEUMONIA).
    """
    meta = ModelMeta(
        model=config.model,
        preprocess=config.preprocess,
        config=config,
        synthetic_data=synthetic,
        explain=config.explain,
        film_classes=present_classes(data.rows["train"]["class_name"]),
    )
    predictor = Predictor(TorchEngine(meta, module.net.cpu().float()))  # fp32, as predict runs it
    val = data.dataset("val")
    logits, gate_logits = predictor.outputs(np.asarray(val.pixels))
    temperature = fit_temperature(logits, val.labels) if config.calibration.temperature_scaling else 1.0
    probs = calibrated(logits, temperature)
    choice = choose_threshold(probs, val.labels, config.calibration, sites=val.sites)
    threshold = choice.threshold
    metrics["validation"] = binary_metrics(val.labels.astype(int), probs, threshold)
    other = other_metrics(data.rows["val"].assign(predicted=(probs >= threshold).astype(int)))
    if other is not None:
        metrics["validation_other"] = other
    gate = None
    if gate_logits is not None:
        negatives = {
            name: predictor.scores(images)[:, 1] for name, images in data.validation_negatives().items()
        }
        sites = np.asarray(data.sites)[val.sites]
        gate = choose_gate(ood_scores(gate_logits), negatives, config.gate, sites)
    metrics["validation_per_site"] = {
        site: binary_metrics(val.labels[val.sites == index].astype(int), probs[val.sites == index], threshold)
        for index, site in enumerate(data.sites)
    }
    meta = meta.model_copy(
        update={
            "threshold": threshold,
            "threshold_rule": choice.rule,
            "temperature": temperature,
            "metrics": metrics,
            "gate": gate,
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
