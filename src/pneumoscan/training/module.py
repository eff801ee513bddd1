"""The LightningModule: network, augmentation, loss, metrics, optimiser and LR schedule.

With a gate head (``model.gate``), every training batch of chest films is joined by non-chest
images: ``gate.negative_fraction`` of the batch drawn from the data module's negative bank
(augmented like the films), and half as many chest films of the batch made unjudgeable (inverted,
turned on their side or upside down, or a tiny zoomed crop).  The gate learns "chest film" (1)
against those (0) with its own BCE, weighted by ``gate.loss_weight``; the classifier's loss sees the
chest films only.
"""

from __future__ import annotations

import re
from typing import Any, cast

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from pneumoscan.augment import build_augmentation
from pneumoscan.config import Config
from pneumoscan.errors import PneumoscanError
from pneumoscan.models import build_model

MONITOR_MODES = {"val_loss": "min", "val_auc_worst": "max", "val_auc_mean": "max"}


def site_metric_keys(sites: list[str]) -> list[str]:
    """The names of ``sites`` in metric names (``val_auc_<key>``): letters, digits, ``_`` and ``-`` only."""
    keys = [re.sub(r"[^A-Za-z0-9_-]", "_", site) or "_" for site in sites]
    if len(set(keys)) < len(keys):
        raise PneumoscanError(f"sites {', '.join(sites)}: two names differ only in punctuation; rename one")
    return keys


class XrayClassifier(L.LightningModule):
    """Binary pneumonia classifier trained with (optionally class-weighted, smoothed) BCE."""

    def __init__(
        self, config: dict[str, Any], pos_weight: float | None = None, sites: list[str] | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = Config.from_dict(config)
        self.net = build_model(self.config.model, self.config.preprocess)
        self.augment = build_augmentation(self.config.augment, self.config.preprocess)
        if self.config.train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.pos_weight: torch.Tensor
        self.register_buffer("pos_weight", torch.tensor([pos_weight if pos_weight else 1.0]))
        self.negatives: torch.Tensor | None = None
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()
        self.val_auc = BinaryAUROC()
        self.site_keys = site_metric_keys(sites or ["data"])
        self.val_site_auc = nn.ModuleList(BinaryAUROC() for _ in self.site_keys)
        self.val_site_loss = nn.ModuleList(MeanMetric() for _ in self.site_keys)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._layout(x))

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.net.gate is not None and self.negatives is None:
            self.negatives = torch.from_numpy(self.trainer.datamodule.negative_bank())  # type: ignore[attr-defined]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            x, y = batch
            with torch.no_grad():
                count = round(len(y) * self.config.gate.negative_fraction)
                gated = self.net.gate is not None and self.negatives is not None and count > 0
                if gated:
                    x = torch.cat([x, self._bank_sample(count, x)])
                x = self.augment(x)
                if gated:
                    x = torch.cat([x, unjudgeable(x[: len(y)], max(1, count // 2))])
            return x, y
        return batch

    def _bank_sample(self, count: int, like: torch.Tensor) -> torch.Tensor:
        assert self.negatives is not None
        rows = self.negatives[torch.randint(len(self.negatives), (count,))]
        images = rows.to(like.device, like.dtype).div_(255.0).unsqueeze(1)
        return images.expand(-1, like.shape[1], -1, -1).contiguous()

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        smoothing = self.config.train.label_smoothing
        target = y * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(
            logits.float(), target, pos_weight=self.pos_weight, reduction=reduction
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if len(x) == len(y):
            logits = self(x)
            loss = self._loss(logits, y)
        else:
            all_logits, gate_logits = self.net.forward_with_gate(self._layout(x))
            logits = all_logits[: len(y)]
            is_chest = (torch.arange(len(x), device=x.device) < len(y)).float()
            gate_loss = F.binary_cross_entropy_with_logits(gate_logits.float(), is_chest)
            loss = self._loss(logits, y) + self.config.gate.loss_weight * gate_loss
            self.log(
                "train_gate_loss", gate_loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y)
            )
        self.train_acc(logits.float().sigmoid(), y.int())
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y)
        )
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, *site = batch
        logits = self(x)
        probs = logits.float().sigmoid()
        self.val_acc(probs, y.int())
        self.val_auc(probs, y.int())
        self.log(
            "val_loss", self._loss(logits, y), on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y)
        )
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_auc", self.val_auc, on_epoch=True, batch_size=len(y))
        sites = site[0] if site else torch.zeros_like(y, dtype=torch.int64)
        losses = self._loss(logits, y, reduction="none")
        for index, (_, auc, loss) in enumerate(self._site_metrics()):
            mine = sites == index  # every site in every step, so that DDP processes stay in step
            auc.update(probs[mine], y[mine].int())
            loss.update(losses[mine])

    def on_validation_epoch_end(self) -> None:
        """Log ``val_auc_<site>``, ``val_loss_<site>``, ``val_auc_worst`` and ``val_auc_mean``."""
        if not self.trainer.sanity_checking:  # the sanity check's few batches may miss a site
            aucs = []
            for key, auc, loss in self._site_metrics():
                aucs.append(auc.compute())
                self.log(f"val_auc_{key}", aucs[-1])
                self.log(f"val_loss_{key}", loss.compute())
            self.log("val_auc_worst", torch.stack(aucs).min())
            self.log("val_auc_mean", torch.stack(aucs).mean())
        for _, auc, loss in self._site_metrics():
            auc.reset()
            loss.reset()

    def _site_metrics(self) -> list[tuple[str, BinaryAUROC, MeanMetric]]:
        aucs = cast(list[BinaryAUROC], list(self.val_site_auc))
        losses = cast(list[MeanMetric], list(self.val_site_loss))
        return list(zip(self.site_keys, aucs, losses, strict=True))

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


def unjudgeable(films: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` chest films of a batch made into images the model must refuse: inverted (negative
    polarity), turned by 90, 180 or 270 degrees, or a zoomed crop of a fifth to a third of the side."""
    side = films.shape[-1]
    out = []
    for index in torch.randint(len(films), (count,)).tolist():
        film = films[index]
        kind = int(torch.randint(3, ()))
        if kind == 0:
            out.append(1.0 - film)
        elif kind == 1:
            out.append(torch.rot90(film, int(torch.randint(1, 4, ())), dims=(1, 2)))
        else:
            crop = int(torch.randint(side // 5, side // 3 + 1, ()))
            top, left = torch.randint(side - crop + 1, (2,)).tolist()
            patch = film[None, :, top : top + crop, left : left + crop]
            out.append(F.interpolate(patch, size=(side, side), mode="bilinear", align_corners=False)[0])
    return torch.stack(out)
