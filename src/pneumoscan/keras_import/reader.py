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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumoscan.errors import ModelFileError

MAX_CONFIG_BYTES = 1 << 20  # a .keras file's config.json (the notebook's: 19 KB) is read only up to this
# Keras names a layer's weights group in a .keras file after its class, in snake case.
_SNAKE = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "Dense": "dense"}


@dataclass
class KerasLayer:
    """One layer of a Keras model: class name, its config and its weights in Keras's order."""

    kind: str
    config: dict[str, Any]
    weights: list[Any] = field(default_factory=list)  # arrays, or h5py datasets not yet read

    @property
    def name(self) -> str:
        return str(self.config.get("name", "?"))


@dataclass
class KerasModel:
    """The layers of a Keras model file, in order, and the Keras version that wrote it.

    ``zipped``: a Keras 3 ``.keras`` zip (else an HDF5 file).
    """

    path: Path
    zipped: bool
    layers: list[KerasLayer]
    keras_version: str


def read_keras(path: str | os.PathLike[str]) -> KerasModel:
    """Read the layers (their configs, not yet their weights) of a ``.h5`` or ``.keras`` file.

    One-line :class:`ModelFileError` for anything else; a ``.keras`` file's config.json over
    :data:`MAX_CONFIG_BYTES` is refused before it is inflated.
    """
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: {'is a folder, not' if path.is_dir() else 'not found; expected'} a Keras file"
        )
    try:
        return _read_layers(path, h5py)
    except _READ_ERRORS as exc:
        raise _damaged(path, exc) from None


def _read_layers(path: Path, h5py: Any) -> KerasModel:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ModelFileError(
                    f"{path}: a zip file without config.json and model.weights.h5; not a .keras model"
                )
            configs = _layer_configs(path, _member(path, archive, "config.json", MAX_CONFIG_BYTES))
            has_metadata = "metadata.json" in names
            raw = _member(path, archive, "metadata.json", MAX_CONFIG_BYTES) if has_metadata else b""
            metadata = json.loads(raw) if raw else {}
        version = metadata.get("keras_version", "?") if isinstance(metadata, dict) else "?"
        return KerasModel(path, True, _layers(path, configs), str(version))
    with h5py.File(path, "r") as handle:
        configs = _layer_configs(path, handle.attrs.get("model_config"))
        version = _text(handle.attrs.get("keras_version") or "?")
    return KerasModel(path, False, _layers(path, configs), version)


@contextmanager
def keras_weights(model: KerasModel, max_bytes: int) -> Iterator[None]:
    """Attach each layer's weight arrays (h5py datasets: shapes declared, data not yet read) for the
    duration; a ``.keras`` file's weights file over ``max_bytes`` is refused before it is read."""
    h5py = _h5py()
    path = model.path
    with ExitStack() as stack:
        try:
            if model.zipped:
                archive = stack.enter_context(zipfile.ZipFile(path))
                weights = io.BytesIO(_member(path, archive, "model.weights.h5", max_bytes))
                handle = stack.enter_context(h5py.File(weights, "r"))
                _attach_keras3(path, model.layers, handle)
            else:
                handle = stack.enter_context(h5py.File(path, "r"))
                _attach_h5(path, model.layers, handle)
        except _READ_ERRORS as exc:
            raise _damaged(path, exc) from None
        try:
            yield
        finally:
            for layer in model.layers:
                layer.weights = []  # the datasets close with the file


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ModelFileError("reading Keras files needs h5py: pip install 'pneumoscan[keras]'") from None
    return h5py


_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, RecursionError)


def _damaged(path: Path, exc: BaseException) -> ModelFileError:
    """Errors of h5py, zipfile and json while reading ``path`` as one line."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelFileError(
        f"{path}: not a Keras .h5 or .keras model file, or damaged ({reason}); "
        "save the whole model in Keras with model.save('model.h5') or model.save('model.keras')"
    )


def _member(path: Path, archive: zipfile.ZipFile, name: str, max_bytes: int) -> bytes:
    """A zip member's bytes, refused before reading when its declared size is over ``max_bytes``
    (zipfile never reads past the declared size)."""
    size = archive.getinfo(name).file_size
    if size > max_bytes:
        raise ModelFileError(
            f"{path}: its {name} declares {size:,} bytes, more than a seed-cnn model needs "
            f"({max_bytes:,}); the file is damaged or not the notebook's model"
        )
    return archive.read(name)


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
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ModelFileError(
            f"{path}: its Keras model config lists no layers; not a Sequential or Functional model"
        )
    return layers


def _layers(path: Path, configs: list[Any]) -> list[KerasLayer]:
    """The layers of a model config; refuses a layer that is not ``{"class_name": str, "config": {}}``."""
    layers = []
    for index, entry in enumerate(configs):
        kind = entry.get("class_name") if isinstance(entry, dict) else None
        config = entry.get("config", {}) if isinstance(entry, dict) else None
        if not isinstance(kind, str) or not isinstance(config, dict):
            raise ModelFileError(
                f"{path}: layer {index} of its Keras model config is malformed (not a class name and "
                "a config); the file is damaged"
            )
        layers.append(KerasLayer(kind, config))
    return layers


def _attach_h5(path: Path, layers: list[KerasLayer], handle: Any) -> None:
    weights = handle.get("model_weights")
    for layer in layers:
        if weights is not None and layer.name in weights:
            group = weights[layer.name]
            layer.weights = [group[_text(n)] for n in group.attrs.get("weight_names", [])]


def _attach_keras3(path: Path, layers: list[KerasLayer], handle: Any) -> None:
    seen = dict.fromkeys(_SNAKE.values(), 0)
    for layer in layers:
        snake = _SNAKE.get(layer.kind)
        if snake is not None:
            key = f"layers/{snake}" + (f"_{seen[snake]}" if seen[snake] else "") + "/vars"
            seen[snake] += 1
            group = handle[key]
            layer.weights = [group[i] for i in sorted(group, key=int)]
