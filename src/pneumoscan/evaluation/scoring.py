"""Logits for the films of a manifest, in manifest order (shared by ``evaluate`` and ``calibrate``).

Images are read from the cache in the manifest's order, so every logit stays attached to its own
file and label.  Torch-free (the engine decides), and free of plotting libraries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.calibration import ood_scores
from pneumoscan.data.cache import load_cached
from pneumoscan.errors import DataError
from pneumoscan.predict import Predictor


@dataclass
class Scored:
    """Manifest rows of the readable films, their raw logits and out-of-distribution scores (same
    order; ``ood`` is None for a model without a gate), and the unreadable files."""

    rows: pd.DataFrame
    logits: np.ndarray
    failures: dict[str, str]
    ood: np.ndarray | None = None

    def refused_by(self, predictor: Predictor) -> np.ndarray:
        """Per film, whether ``predictor``'s gate refuses it (all False without a gate or refusing)."""
        gate = predictor.meta.gate
        if self.ood is None or gate is None or not predictor.refuse:
            return np.zeros(len(self.logits), dtype=bool)
        return self.ood > gate.threshold


def score_manifest(
    predictor: Predictor,
    frame: pd.DataFrame,
    what: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Scored:
    """Logits of every film of ``frame``; :class:`DataError` naming ``what`` if none is readable."""
    cache = Path(cache_dir) if cache_dir is not None else None
    cached = load_cached(frame["path"].tolist(), predictor.meta.preprocess, cache, progress)
    if not cached.paths:
        raise DataError(f"{what}: none of the {len(frame)} images could be read")
    rows = frame.set_index("path").loc[cached.paths].reset_index()
    logits, gate = predictor.outputs(np.asarray(cached.pixels))
    ood = None if gate is None else ood_scores(gate)
    return Scored(rows, logits, cached.failures, ood)
