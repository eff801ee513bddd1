"""What training prints: no Lightning tips or model summary, and one plain line per epoch off a terminal."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator

import lightning as L
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback

_LOGGERS = ("lightning.pytorch", "lightning.fabric")
_SHOWN = ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's info messages (device lines, "Tip: ... litlogger") and its hints and
    deprecation notices (e.g. "fewer batches than the logging interval") while the block runs.

    Importing Lightning sets its loggers to INFO, so a setting made before the import does not
    last; Lightning's warnings of real problems and all errors still show.
    """
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            for category in (PossibleUserWarning, DeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            # XrayClassifier augments in on_after_batch_transfer on purpose, whatever the DataModule does
            warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class EpochLines(Callback):
    """Prints one line per finished epoch (losses, accuracies, time) where no progress bar is drawn."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        values = "  ".join(f"{name} {float(metrics[name]):.4f}" for name in _SHOWN if name in metrics)
        seconds = time.perf_counter() - self._started
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {values}  ({seconds:.1f} s)", flush=True
        )
