"""Lightning data module: data sources -> per-site patient-wise split -> cached uint8 images -> batches.

Training batches are ``(x, y)``, validation batches ``(x, y, site)``: ``x`` float32 ``(N, C, S, S)`` in
[0, 1] made by :func:`pneumoscan.preprocess.to_model_input`, ``y`` float32 pneumonia targets (1 =
PNEUMONIA; NORMAL and OTHER films are 0, :mod:`pneumoscan.classes`),
``site`` int64 indices into :attr:`XrayDataModule.sites` (for the per-site validation metrics).
Augmentation is applied by the LightningModule on the batch, not here; training images are
cached at :func:`pneumoscan.augment.training_view` (wider than the model's view when the recipe
uses ``augment.framing``), validation images exactly as the model sees them.

Training draws are weighted (:func:`sampling_weights`) when ``data.balanced_sampling`` or
``data.site_balance`` asks for it. Ambiguous OTHER films are left out of both splits unless
``data.ambiguous_other`` is ``negative`` (:func:`pneumoscan.classes.trained_films`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from pneumoscan.augment import training_view
from pneumoscan.classes import trained_films
from pneumoscan.config import Config, PreprocessConfig
from pneumoscan.data.cache import CachedImages, load_cached
from pneumoscan.data.imageio import find_image_files
from pneumoscan.data.manifest import require_both_classes, scan_sources, training_pool
from pneumoscan.data.negatives import GENERATORS, generate_negatives
from pneumoscan.errors import DataError
from pneumoscan.preprocess import to_model_input

GENERATOR_NAMES = list(GENERATORS)


def negative_files(folder: str | Path, split: str) -> list[str]:
    """The image files of a ``gate.negatives`` folder that the gate trains on (``train``) or is
    measured on (``val``: every fifth file in sorted order)."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: negatives folder not found (gate.negatives); fix the path")
    files = sorted(str(p) for p in find_image_files(folder))
    return [p for i, p in enumerate(files) if (i % 5 == 4) == (split == "val")]


def sampling_weights(
    labels: np.ndarray,
    sites: np.ndarray,
    balanced_classes: bool,
    site_balance: float,
    groups: np.ndarray | None = None,
) -> np.ndarray | None:
    """Per-image draw weights of the training sampler, or None for plain shuffling.

    Each image starts at 1, or with ``balanced_classes`` at ``n_group / (2 n_group,class)`` (class: the
    pneumonia target, so OTHER films count among the negatives), so that both targets are equally likely
    within every group (by default the site; e.g. a site's view with ``data.balance_views``) while each
    group keeps its total weight ``n_group``; the images of a site are then scaled by
    ``n_site ** -site_balance``. So 0 keeps the sites in proportion to their size, 1 makes every site
    equally likely per draw.
    """
    if not balanced_classes and site_balance == 0:
        return None
    labels, sites = labels.astype(int), sites.astype(int)
    groups = sites if groups is None else groups.astype(int)
    per_group = np.bincount(groups)
    cells = groups * 2 + labels  # (group, class)
    weights = (
        per_group[groups] / (2.0 * np.bincount(cells)[cells]) if balanced_classes else np.ones(len(labels))
    )
    return weights * np.bincount(sites)[sites].astype(float) ** -site_balance


class CachedImageDataset(Dataset):
    """Rows of a cached uint8 image array with their labels (and, with ``with_sites``, site indices)."""

    def __init__(
        self, pixels: np.ndarray, labels: np.ndarray, sites: np.ndarray, with_sites: bool = False
    ) -> None:
        self.pixels = pixels
        self.labels = labels.astype(np.float32)
        self.sites = sites.astype(np.int64)
        self.with_sites = with_sites

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple:
        item = (np.asarray(self.pixels[index]), self.labels[index])
        return (*item, self.sites[index]) if self.with_sites else item


def make_collate(cfg: PreprocessConfig):
    """Collate function turning cached rows into model input through the preprocessing contract.

    Items are ``(image, label)`` or ``(image, label, site)``; the batch keeps the same form.
    """

    def collate(items: list[tuple]) -> tuple[torch.Tensor, ...]:
        images = np.stack([item[0] for item in items])
        labels = np.array([item[1] for item in items], dtype=np.float32)
        batch: tuple[torch.Tensor, ...] = (
            torch.from_numpy(to_model_input(images, cfg)),
            torch.from_numpy(labels),
        )
        if len(items[0]) > 2:
            batch += (torch.tensor([int(item[2]) for item in items], dtype=torch.int64),)
        return batch

    return collate


def cached_split(
    frame: pd.DataFrame, cfg: Config, progress: bool = True, view: PreprocessConfig | None = None
) -> tuple[CachedImages, pd.DataFrame]:
    """Cached images of ``frame``'s readable rows and those rows, in the cache's order.

    Unreadable files are skipped. ``view``: how to prepare them, by default as the model sees them
    (``cfg.preprocess``).
    """
    view = view or cfg.preprocess
    cached = load_cached(frame["path"].tolist(), view, cfg.data.cache_dir, progress)
    return cached, frame.set_index("path").loc[cached.paths].reset_index()


class XrayDataModule(L.LightningDataModule):
    """Train/validation data of data sources (folders, labels CSVs; a site each) under one :class:`Config`."""

    def __init__(
        self, sources: str | Path | Sequence[str | Path], config: Config, progress: bool = True
    ) -> None:
        super().__init__()
        self.sources = [sources] if isinstance(sources, str | Path) else list(sources)
        self.config = config
        self.progress = progress
        self.manifest: pd.DataFrame | None = None
        self.sites: list[str] = []
        self.skipped: dict[str, str] = {}
        self.rows: dict[str, pd.DataFrame] = {}  # the readable films of each split, in dataset order
        self._sets: dict[str, CachedImageDataset] = {}

    def prepare_data(self) -> None:
        """Decode every image into the cache once (runs on one process per node)."""
        self._load()

    def setup(self, stage: str | None = None) -> None:
        if not self._sets:
            self._load()

    def _load(self) -> None:
        data = self.config.data
        pool = training_pool(
            scan_sources(self.sources), data.val_fraction, data.min_val_images, data.split_seed
        )
        self.sites = sorted(pool["site"].unique())
        self.skipped = {}
        used = trained_films(pool, data.ambiguous_other)
        for split in ("train", "val"):
            part = pool[used & (pool["split"] == split).to_numpy()]
            view = training_view(self.config.preprocess, self.config.augment) if split == "train" else None
            cached, rows = cached_split(part, self.config, self.progress, view)
            self.skipped.update(cached.failures)
            for site in self.sites:
                require_both_classes(rows[rows["site"] == site], f"site {site!r} ({split}, readable files)")
            sites = rows["site"].map(self.sites.index).to_numpy()
            self.rows[split] = rows
            self._sets[split] = CachedImageDataset(
                cached.pixels, rows["label"].to_numpy(), sites, split == "val"
            )
        self.manifest = pool.assign(readable=~pool["path"].isin(self.skipped), trained=used)

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
        paths = [p for folder in self.config.gate.negatives for p in negative_files(folder, split)]
        if not paths:
            return np.zeros((0, view.image_size, view.image_size), np.uint8)
        cached = load_cached(paths, view, self.config.data.cache_dir, self.progress)
        return np.asarray(cached.pixels)

    def class_counts(self) -> tuple[int, int]:
        """Number of training images without pneumonia (NORMAL and OTHER) and with it (PNEUMONIA)."""
        labels = self.dataset("train").labels
        return int((labels == 0).sum()), int((labels == 1).sum())

    def dataset(self, split: str) -> CachedImageDataset:
        """The ``train`` or ``val`` dataset (after :meth:`setup`)."""
        self.setup()
        return self._sets[split]

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        data = self.config.data
        rows = self.rows["train"]
        strata = rows["site"] + ("/" + rows["view"] if data.balance_views else "")  # class-balancing groups
        weights = sampling_weights(
            dataset.labels, dataset.sites, data.balanced_sampling, data.site_balance, pd.factorize(strata)[0]
        )
        sampler = None
        if weights is not None:
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
