"""Lightning data module: manifest -> patient-wise split -> cached uint8 images -> batches.

Batches are ``(x, y)`` with ``x`` float32 ``(N, C, S, S)`` in [0, 1] made by
:func:`pneumoscan.preprocess.to_model_input` and ``y`` float32 labels (1 = PNEUMONIA).
Augmentation is applied by the LightningModule on the batch, not here; training images are
cached at :func:`pneumoscan.augment.training_view` (wider than the model's view when the recipe
uses ``augment.framing``), validation images exactly as the model sees them.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from pneumoscan.augment import training_view
from pneumoscan.config import Config, PreprocessConfig
from pneumoscan.data.cache import CachedImages, load_cached
from pneumoscan.data.imageio import find_image_files
from pneumoscan.data.manifest import require_both_classes, scan_dataset, training_pool
from pneumoscan.data.negatives import GENERATORS, generate_negatives
from pneumoscan.errors import DataError
from pneumoscan.preprocess import to_model_input

GENERATOR_NAMES = list(GENERATORS)


class CachedImageDataset(Dataset):
    """Rows of a cached uint8 image array with their labels."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        self.pixels = pixels
        self.labels = labels.astype(np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.float32]:
        return np.asarray(self.pixels[index]), self.labels[index]


def make_collate(cfg: PreprocessConfig):
    """Collate function turning cached rows into model input through the preprocessing contract."""

    def collate(items: list[tuple[np.ndarray, np.float32]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.stack([image for image, _ in items])
        labels = np.array([label for _, label in items], dtype=np.float32)
        return torch.from_numpy(to_model_input(images, cfg)), torch.from_numpy(labels)

    return collate


def cached_split(
    frame: pd.DataFrame, cfg: Config, progress: bool = True, view: PreprocessConfig | None = None
) -> tuple[CachedImages, np.ndarray]:
    """Cached images of ``frame``'s readable rows and their labels (unreadable files are skipped).

    ``view``: how to prepare them, by default as the model sees them (``cfg.preprocess``).
    """
    view = view or cfg.preprocess
    cached = load_cached(frame["path"].tolist(), view, cfg.data.cache_dir, progress)
    labels = frame.set_index("path").loc[cached.paths, "label"].to_numpy()
    return cached, labels


class XrayDataModule(L.LightningDataModule):
    """Train/validation data of one data folder under one :class:`Config`."""

    def __init__(self, data_dir: str | Path, config: Config, progress: bool = True) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.config = config
        self.progress = progress
        self.manifest: pd.DataFrame | None = None
        self.skipped: dict[str, str] = {}
        self._sets: dict[str, CachedImageDataset] = {}

    def prepare_data(self) -> None:
        """Decode every image into the cache once (runs on one process per node)."""
        self._load()

    def setup(self, stage: str | None = None) -> None:
        if not self._sets:
            self._load()

    def _load(self) -> None:
        frame = scan_dataset(self.data_dir)
        data = self.config.data
        pool = training_pool(frame, data.val_fraction, data.min_val_images, data.split_seed)
        self.skipped = {}
        for split in ("train", "val"):
            part = pool[pool["split"] == split]
            require_both_classes(part, f"{self.data_dir} ({split} split)")
            view = training_view(self.config.preprocess, self.config.augment) if split == "train" else None
            cached, labels = cached_split(part, self.config, self.progress, view)
            self.skipped.update(cached.failures)
            self._sets[split] = CachedImageDataset(cached.pixels, labels)
            require_both_classes(
                pd.DataFrame({"label": labels}), f"{self.data_dir} ({split}, readable files)"
            )
        self.manifest = pool.assign(readable=~pool["path"].isin(self.skipped))

    def negative_bank(self) -> np.ndarray:
        """Non-chest images for training the gate, ``(N, S, S)`` uint8 at the training view's size:
        ``gate.generated_negatives`` generated ones and the training part of the ``gate.negatives``
        folders (see :meth:`validation_negatives`)."""
        view = training_view(self.config.preprocess, self.config.augment)
        generated = generate_negatives(
            self.config.gate.generated_negatives, view.image_size, self.config.train.seed
        )
        return np.concatenate([generated, self._real_negatives("train", view)])

    def validation_negatives(self) -> dict[str, np.ndarray]:
        """Held-out non-chest images by kind (a fifth as many as the bank, at least 10 per kind,
        generated with another seed, and every fifth file of the ``gate.negatives`` folders), as the
        model sees them, for measuring the gate."""
        side = self.config.preprocess.image_size
        count = max(10 * len(GENERATOR_NAMES), self.config.gate.generated_negatives // 5)
        generated = generate_negatives(count, side, self.config.train.seed + 10_000)
        kinds = {name: generated[i :: len(GENERATOR_NAMES)] for i, name in enumerate(GENERATOR_NAMES)}
        real = self._real_negatives("val", self.config.preprocess)
        return {**kinds, "real (gate.negatives folders)": real} if len(real) else kinds

    def _real_negatives(self, split: str, view: PreprocessConfig) -> np.ndarray:
        paths: list[str] = []
        for folder in self.config.gate.negatives:
            if not Path(folder).is_dir():
                raise DataError(f"{folder}: negatives folder not found (gate.negatives); fix the path")
            files = sorted(str(p) for p in find_image_files(folder))
            paths += [p for i, p in enumerate(files) if (i % 5 == 4) == (split == "val")]
        if not paths:
            return np.zeros((0, view.image_size, view.image_size), np.uint8)
        cached = load_cached(paths, view, self.config.data.cache_dir, self.progress)
        return np.asarray(cached.pixels)

    def class_counts(self) -> tuple[int, int]:
        """Number of NORMAL and PNEUMONIA images in the training split."""
        labels = self.dataset("train").labels
        return int((labels == 0).sum()), int((labels == 1).sum())

    def dataset(self, split: str) -> CachedImageDataset:
        """The ``train`` or ``val`` dataset (after :meth:`setup`)."""
        self.setup()
        return self._sets[split]

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = None
        if self.config.data.balanced_sampling:
            counts = np.bincount(dataset.labels.astype(int), minlength=2)
            weights = 1.0 / counts[dataset.labels.astype(int)]
            sampler = WeightedRandomSampler(weights.tolist(), num_samples=len(dataset), replacement=True)
        return DataLoader(
            dataset,
            batch_size=self.config.train.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=make_collate(self.config.preprocess),
            drop_last=len(dataset) > self.config.train.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dataset("val"),
            batch_size=max(64, self.config.train.batch_size),
            collate_fn=make_collate(self.config.preprocess),
        )
