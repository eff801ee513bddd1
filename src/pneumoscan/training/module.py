"""The LightningModule: network, augmentation, loss, metrics, optimiser and LR schedule."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from pneumoscan.augment import build_augmentation
from pneumoscan.config import Config
from pneumoscan.models import build_model


class XrayClassifier(L.LightningModule):
    """Binary pneumonia classifier trained with (optionally class-weighted, smoothed) BCE."""

    def __init__(self, config: dict[str, Any], pos_weight: float | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = Config.from_dict(config)
        self.net = build_model(self.config.model, self.config.preprocess)
        self.augment = build_augmentation(self.config.augment, self.config.preprocess)
        if self.config.train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.pos_weight: torch.Tensor
        self.register_buffer("pos_weight", torch.tensor([pos_weight if pos_weight else 1.0]))
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()
        self.val_auc = BinaryAUROC()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if self.trainer is not None and self.trainer.training:
            with torch.no_grad():
                x = self.augment(x)
        return x, y

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        smoothing = self.config.train.label_smoothing
        target = y * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=self.pos_weight)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        self.train_acc(logits.float().sigmoid(), y.int())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        probs = logits.float().sigmoid()
        self.val_acc(probs, y.int())
        self.val_auc(probs, y.int())
        self.log("val_loss", self._loss(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val_auc", self.val_auc, on_epoch=True)

    def configure_optimizers(self) -> Any:
        cfg = self.config.train
        optimizer_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_cls(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "onecycle":
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=max(total, 2)
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
