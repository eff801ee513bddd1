"""pneumoscan: pneumonia detection on chest X-rays.

The pipeline, one module per step::

    data (imageio, manifest, cache, datamodule) -> preprocess -> augment -> models -> train
    -> evaluate -> predict / explain -> serve / export

Public API (imported lazily, so the torch-free parts stay torch-free)::

    from pneumoscan import Predictor, train, evaluate, Config, recipe
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Config": "pneumoscan.config",
    "recipe": "pneumoscan.config",
    "Predictor": "pneumoscan.predict",
    "Prediction": "pneumoscan.predict",
    "train": "pneumoscan.training.fit",
    "evaluate": "pneumoscan.evaluation.evaluate",
    "scan_dataset": "pneumoscan.data.manifest",
    "scan_sources": "pneumoscan.data.manifest",
    "read_image": "pneumoscan.data.imageio",
    "PneumoscanError": "pneumoscan.errors",
}

if TYPE_CHECKING:
    from pneumoscan.config import Config, recipe
    from pneumoscan.data.imageio import read_image
    from pneumoscan.data.manifest import scan_dataset, scan_sources
    from pneumoscan.errors import PneumoscanError
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.predict import Prediction, Predictor
    from pneumoscan.training.fit import train

__all__ = [
    "Config",
    "PneumoscanError",
    "Prediction",
    "Predictor",
    "__version__",
    "evaluate",
    "read_image",
    "recipe",
    "scan_dataset",
    "scan_sources",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pneumoscan' has no attribute {name!r}")
