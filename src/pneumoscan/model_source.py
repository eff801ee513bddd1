"""The one model resolver: what a MODEL argument names, and which engine runs it.

Every command (``predict``, ``evaluate``, ``export``, ``serve``, ``info``, ``train --init-from``)
and :meth:`pneumoscan.predict.Predictor.load` go through :func:`resolve_model`:

* ``None`` or ``bundled``: the model shipped inside the package (``.safetensors``);
* ``*.safetensors``: a pneumoscan model file, run by PyTorch;
* ``*.onnx``: an export from ``pneumoscan export``, run by onnxruntime;
* ``*.ckpt``: a Lightning training checkpoint -- refused with a pointer to the run's model file;
* anything else is not a model (for ``predict``, :func:`names_model` says it is an image).

The engine comes from the file unless one is asked for; a file the asked engine cannot run is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pneumoscan.errors import ModelFileError, UnsupportedInputError

EngineName = Literal["torch", "onnx"]
BUNDLED = "bundled"
BUNDLED_MODEL = "pneumoscan-default.safetensors"
ENGINE_OF_SUFFIX: dict[str, EngineName] = {".safetensors": "torch", ".onnx": "onnx"}
CHECKPOINT_SUFFIX = ".ckpt"
EXPORT_HINT = "export it first: pneumoscan export MODEL --format onnx OUT.onnx"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model argument: the file, the engine that runs it, and whether it is the bundled model."""

    path: Path
    engine: EngineName
    bundled: bool = False


def bundled_model_path() -> Path:
    """Path of the model shipped inside the package."""
    return Path(str(resources.files("pneumoscan") / "bundled" / BUNDLED_MODEL))


def require_model_file(path: Path) -> None:
    """Refuse a model path that is missing, a folder, or not a regular file (a FIFO, a device, a
    socket: never opened, a FIFO would block)."""
    if path.is_file():
        return
    if path.is_dir():
        what = "is a folder, not a model file"
    elif os.path.lexists(path):
        what = "is not a regular file (a pipe, a device or a socket); pass a model file"
    else:
        what = "model file not found"
    raise ModelFileError(f"{path}: {what}")


def names_model(argument: str) -> bool:
    """Whether a command-line argument names a model (``bundled`` or a model/checkpoint suffix)."""
    suffix = Path(argument).suffix.lower()
    return argument == BUNDLED or suffix in ENGINE_OF_SUFFIX or suffix == CHECKPOINT_SUFFIX


def resolve_model(model: str | os.PathLike[str] | None, engine: EngineName | None = None) -> ModelSource:
    """The model file ``model`` names and its engine (``engine`` if given, else the file's own).

    Raises :class:`~pneumoscan.errors.ModelFileError` for a missing bundled model, a training
    checkpoint, a file that is not a model, or a file the requested engine cannot run.
    """
    if engine not in (None, "torch", "onnx"):
        raise UnsupportedInputError(f"unknown engine {engine!r}; use 'torch' or 'onnx'")
    if model is None or os.fspath(model) == BUNDLED:
        path = bundled_model_path()
        if not path.exists():
            raise ModelFileError(f"{path}: the bundled model is missing from this install; pass a model file")
        if engine == "onnx":
            raise ModelFileError(
                f"the bundled model is a .safetensors file for the torch engine; {EXPORT_HINT}"
            )
        return ModelSource(path, "torch", bundled=True)
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix == CHECKPOINT_SUFFIX:
        raise ModelFileError(
            f"{path}: a training checkpoint, not a model file; use the run's model.safetensors "
            "(an interrupted run writes it when continued: pneumoscan train --data DATA --out RUN --resume)"
        )
    if suffix not in ENGINE_OF_SUFFIX:
        raise ModelFileError(
            f"{path}: not a model file; pass a .safetensors or .onnx file made by pneumoscan, or 'bundled'"
        )
    own = ENGINE_OF_SUFFIX[suffix]
    if engine == "onnx" and own != "onnx":
        raise ModelFileError(
            f"{path}: the onnx engine reads .onnx files; use --engine torch or {EXPORT_HINT}"
        )
    if engine == "torch" and own != "torch":
        raise ModelFileError(f"{path}: an ONNX file runs on the onnx engine; drop --engine torch")
    return ModelSource(path, own)
