"""Prediction: files or decoded images -> calibrated pneumonia probability and label.

>>> from pneumoscan import Predictor
>>> predictor = Predictor.load()                 # the bundled default model
>>> [p.probability for p in predictor.predict_files(["film.jpeg"])]

The engine (``torch`` or ``onnx``) only computes logits; decoding, preprocessing, calibration
(``sigmoid(logit / temperature)``), the threshold and the sanity warnings are the same for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pneumoscan.data.imageio import DecodedImage
from pneumoscan.errors import ImageReadError
from pneumoscan.model_file import ModelMeta
from pneumoscan.model_source import EngineName, resolve_model
from pneumoscan.preprocess import prepare, read_for_model, to_model_input
from pneumoscan.sanity import check_radiograph


class Engine(Protocol):
    """Computes one logit per image of a prepared float32 batch."""

    name: str
    meta: ModelMeta

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class Prediction:
    """The result for one image; ``error`` is set (and the rest empty) when it could not be read.

    ``heatmap_path`` is the heat-map PNG written by :func:`pneumoscan.explain.explain_files`.
    """

    path: str
    probability: float | None = None
    label: str | None = None
    threshold: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    heatmap_path: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON/CSV output."""
        return {
            "path": self.path,
            "probability": self.probability,
            "label": self.label,
            "threshold": self.threshold,
            "warnings": "; ".join(self.warnings),
            "error": self.error or "",
            "heatmap_path": self.heatmap_path or "",
        }


def load_engine(model: str | os.PathLike[str] | None = None, engine: EngineName | None = None) -> Engine:
    """Open a model (see :func:`~pneumoscan.model_source.resolve_model`; ``None``: the bundled model).

    ``engine``: ``torch`` or ``onnx``; by default the one the file is made for.
    """
    source = resolve_model(model, engine)
    if source.engine == "onnx":
        from pneumoscan.engines.onnx_engine import OnnxEngine

        return OnnxEngine.load(source.path)
    from pneumoscan.engines.torch_engine import TorchEngine

    return TorchEngine.load(source.path)


class Predictor:
    """Calibrated pneumonia probabilities from any engine, with the model's threshold."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.meta = engine.meta

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, engine: EngineName | None = None) -> Predictor:
        """Load a model file (``None`` or ``"bundled"``: the bundled model); the engine is the file's own."""
        return cls(load_engine(model, engine))

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw (uncalibrated) logits for prepared uint8 images ``(N, S, S)``."""
        out = [
            self.engine.logits(to_model_input(images[i : i + batch_size], self.meta.preprocess))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0, np.float64)

    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Calibrated probabilities ``sigmoid(logit / temperature)`` for prepared uint8 images."""
        return 1.0 / (1.0 + np.exp(-self.logits(images, batch_size) / self.meta.temperature))

    def label_of(self, probability: float) -> str:
        """Class name at the model's threshold."""
        return self.meta.class_names[int(probability >= self.threshold)]

    def predict_images(self, images: Sequence[DecodedImage], names: Sequence[str]) -> list[Prediction]:
        """Predict already decoded images (e.g. web uploads).

        Decode them with :func:`~pneumoscan.preprocess.read_for_model` to get exactly the
        probabilities of :meth:`predict_files` (large JPEGs are decoded at a reduced scale there).
        """
        prepared = [prepare(image, self.meta.preprocess) for image in images]
        return self._predict_prepared(names, prepared, [check_radiograph(image) for image in images])

    def _predict_prepared(
        self, names: Sequence[str], prepared: Sequence[np.ndarray], warnings: Sequence[list[str]]
    ) -> list[Prediction]:
        probs = self.probabilities(np.stack(prepared)) if prepared else np.zeros(0)
        return [self.result(name, p, warn) for name, p, warn in zip(names, probs, warnings, strict=True)]

    def result(self, name: str, probability: float, warnings: list[str]) -> Prediction:
        """The :class:`Prediction` for a computed probability (label and threshold from the model)."""
        probability = float(probability)
        return Prediction(name, probability, self.label_of(probability), self.threshold, warnings)

    def predict_files(
        self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 64
    ) -> list[Prediction]:
        """Predict files; unreadable ones come back with ``error`` set, in the input order.

        Files are decoded and prepared one at a time and run through the engine in batches, so
        memory stays bounded whatever the number or size of the files.
        """
        results: list[Prediction] = []
        pending: list[tuple[int, np.ndarray, list[str]]] = []

        def flush() -> None:
            names = [results[i].path for i, _, _ in pending]
            done = self._predict_prepared(names, [p for _, p, _ in pending], [w for _, _, w in pending])
            for (i, _, _), prediction in zip(pending, done, strict=True):
                results[i] = prediction
            pending.clear()

        for path in paths:
            results.append(Prediction(str(path)))
            try:
                image = read_for_model(path, self.meta.preprocess)
            except ImageReadError as exc:
                results[-1].error = str(exc)
                continue
            pending.append((len(results) - 1, prepare(image, self.meta.preprocess), check_radiograph(image)))
            if len(pending) >= batch_size:
                flush()
        flush()
        return results
