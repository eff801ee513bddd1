"""Read a Keras model file with h5py alone (no TensorFlow): its layers in order and their weights.

Two formats: the HDF5 file of ``model.save("model.h5")`` (Keras 2 and 3; the architecture is the
``model_config`` attribute, the weights are under ``model_weights/<layer>/`` in the order of each
group's ``weight_names``) and the Keras 3 ``.keras`` zip (``config.json`` plus ``model.weights.h5``,
whose weights sit under ``layers/<class_name_snake_case>[_N]/vars/<i>``). The format is told by
the content, not the file name.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.errors import ModelFileError

# Keras names a layer's weights group in a .keras file after its class, in snake case.
_SNAKE = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "Dense": "dense"}


@dataclass
class KerasLayer:
    """One layer of a Keras model: class name, its config and its weights in Keras's order."""

    kind: str
    config: dict[str, Any]
    weights: list[np.ndarray] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.config.get("name", "?"))


@dataclass
class KerasModel:
    """The layers of a Keras model file, in order, and the Keras version that wrote it."""

    layers: list[KerasLayer]
    keras_version: str


def read_keras(path: str | os.PathLike[str]) -> KerasModel:
    """Read a ``.h5`` or ``.keras`` file; one-line :class:`ModelFileError` for anything else."""
    try:
        import h5py
    except ImportError:
        raise ModelFileError("reading Keras files needs h5py: pip install 'pneumoscan[keras]'") from None
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: {'is a folder, not' if path.is_dir() else 'not found; expected'} a Keras file"
        )
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path, h5py)
        with h5py.File(path, "r") as handle:
            return _read_h5(path, handle)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path}: not a Keras .h5 or .keras model file, or damaged ({reason}); "
            "save the whole model in Keras with model.save('model.h5') or model.save('model.keras')"
        ) from None


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _layer_configs(path: Path, raw: Any) -> list[dict[str, Any]]:
    """The ``layers`` list of a Sequential or Functional model config."""
    if raw is None:
        raise ModelFileError(
            f"{path}: holds weights only, no architecture; save the whole model in Keras with "
            "model.save('model.h5') or model.save('model.keras')"
        )
    config = json.loads(_text(raw))
    layers = config.get("config", {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        raise ModelFileError(
            f"{path}: its Keras model config lists no layers; not a Sequential or Functional model"
        )
    return layers


def _read_h5(path: Path, handle: Any) -> KerasModel:
    configs = _layer_configs(path, handle.attrs.get("model_config"))
    weights = handle.get("model_weights")
    layers = []
    for entry in configs:
        layer = KerasLayer(entry["class_name"], entry.get("config", {}))
        if weights is not None and layer.name in weights:
            group = weights[layer.name]
            layer.weights = [np.asarray(group[_text(n)]) for n in group.attrs.get("weight_names", [])]
        layers.append(layer)
    return KerasModel(layers, _text(handle.attrs.get("keras_version", "?")))


def _read_zip(path: Path, h5py: Any) -> KerasModel:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ModelFileError(
                f"{path}: a zip file without config.json and model.weights.h5; not a .keras model"
            )
        configs = _layer_configs(path, archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
        weights_file = io.BytesIO(archive.read("model.weights.h5"))
    layers, seen = [], dict.fromkeys(_SNAKE.values(), 0)
    with h5py.File(weights_file, "r") as handle:
        for entry in configs:
            layer = KerasLayer(entry["class_name"], entry.get("config", {}))
            snake = _SNAKE.get(layer.kind)
            if snake is not None:
                key = f"layers/{snake}" + (f"_{seen[snake]}" if seen[snake] else "") + "/vars"
                seen[snake] += 1
                group = handle[key]
                layer.weights = [np.asarray(group[i]) for i in sorted(group, key=int)]
            layers.append(layer)
    return KerasModel(layers, str(metadata.get("keras_version", "?")))
