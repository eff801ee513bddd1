"""Prediction: files or decoded images -> calibrated pneumonia probability and label.

>>> from pneumoscan import Predictor
>>> predictor = Predictor.load()                 # the bundled default model
>>> [p.probability for p in predictor.predict_files(["film.jpeg"])]

The engine (``torch`` or ``onnx``) only computes logits; decoding, preprocessing, calibration
(``sigmoid(logit / temperature)``), the threshold, the sanity checks and the refusal are the same
for both.

**Refusal.** An image is *out of distribution* when its DICOM header says it is no frontal chest
radiograph, when it is in colour or blank (:mod:`pneumoscan.sanity`), or when the model's gate
scores it above the threshold stored in the model file (``ood_score > gate.threshold``).  Such an
image is refused: it gets no label, ``refused`` is true and ``refusal_reason`` says why (its
probability is still given where it was computed).  With ``refuse=False`` it gets a label anyway and
stays marked ``out_of_distribution``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pneumoscan.calibration import calibrated, ood_scores
from pneumoscan.data.imageio import DecodedImage
from pneumoscan.errors import ImageReadError, InputRefusedError, UnsupportedInputError
from pneumoscan.model_file import ModelMeta
from pneumoscan.model_source import EngineName, resolve_model
from pneumoscan.preprocess import ModelInput, model_input, read_for_model, to_model_input


class Engine(Protocol):
    """Computes one pneumonia logit (and one gate logit, for a model with a gate) per image of a batch."""

    name: str
    meta: ModelMeta

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


NO_GATE = "this model has no out-of-distribution check: it answers for any image, chest film or not"


@dataclass
class Prediction:
    """The result for one image; ``error`` is set (and the rest empty) when it could not be read.

    ``ood_score`` is the gate's out-of-distribution score (None without a gate or when the header
    refused the file before decoding); ``out_of_distribution`` and ``refusal_reason`` say whether and
    why the image is outside what the model can judge; ``refused`` is true when it was refused for
    that (then ``label`` is None). ``heatmap_path`` is the heat-map PNG written by
    :func:`pneumoscan.explain.explain_files`.
    """

    path: str
    probability: float | None = None
    label: str | None = None
    threshold: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    heatmap_path: str | None = None
    ood_score: float | None = None
    out_of_distribution: bool = False
    refused: bool = False
    refusal_reason: str = ""

    @classmethod
    def of_refused_file(cls, path: str, exc: InputRefusedError) -> Prediction:
        """A file refused by its header before its pixels were decoded (no probability)."""
        return cls(path, out_of_distribution=True, refused=True, refusal_reason=exc.reason)

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON/CSV output."""
        return {
            "path": self.path,
            "probability": self.probability,
            "label": self.label,
            "threshold": self.threshold,
            "ood_score": self.ood_score,
            "out_of_distribution": self.out_of_distribution,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "warnings": "; ".join(self.warnings),
            "error": self.error or "",
            "heatmap_path": self.heatmap_path or "",
        }


def load_engine(
    model: str | os.PathLike[str] | None = None, engine: EngineName | None = None, bf16: bool = False
) -> Engine:
    """Open a model (see :func:`~pneumoscan.model_source.resolve_model`; ``None``: the bundled model).

    ``engine``: ``torch`` or ``onnx``; by default the one the file is made for. Both compute in fp32;
    ``bf16`` asks the torch engine for bf16 autocast (faster on CPUs with native bf16, probabilities
    within about 0.01).
    """
    source = resolve_model(model, engine)
    if source.engine == "onnx":
        if bf16:
            raise UnsupportedInputError(
                f"{source.path}: bf16 is for the torch engine; the ONNX engine runs fp32"
            )
        from pneumoscan.engines.onnx_engine import OnnxEngine

        return OnnxEngine.load(source.path)
    from pneumoscan.engines.torch_engine import TorchEngine

    return TorchEngine.load(source.path, "bf16" if bf16 else "32")


class Predictor:
    """Calibrated pneumonia probabilities from any engine, with the model's threshold and refusal gate.

    ``refuse``: refuse out-of-distribution images (the default); False labels them anyway.
    """

    def __init__(self, engine: Engine, refuse: bool = True) -> None:
        self.engine = engine
        self.meta = engine.meta
        self.refuse = refuse

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        engine: EngineName | None = None,
        refuse: bool = True,
        bf16: bool = False,
    ) -> Predictor:
        """Load a model file (``None`` or ``"bundled"``: the bundled model); the engine is the file's own.

        ``bf16``: the torch engine computes in bf16 instead of fp32 (see :func:`load_engine`).
        """
        return cls(load_engine(model, engine, bf16), refuse)

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def classes_(self) -> tuple[str, str]:
        """The model's output classes from its model file, in the column order of :meth:`predict_proba`
        (scikit-learn style; the positive class, PNEUMONIA, last)."""
        return self.meta.class_names

    def outputs(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw pneumonia logits and gate logits (None without a gate) of prepared uint8 ``(N, S, S)``."""
        runs = [
            self.engine.run(to_model_input(images[i : i + batch_size], self.meta.preprocess))
            for i in range(0, len(images), batch_size)
        ]
        logits = np.concatenate([r[0] for r in runs]).astype(np.float64) if runs else np.zeros(0)
        if not runs or runs[0][1] is None:
            return logits, None
        return logits, np.concatenate([np.asarray(r[1]) for r in runs]).astype(np.float64)

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw (uncalibrated) pneumonia logits for prepared uint8 images ``(N, S, S)``."""
        return self.outputs(images, batch_size)[0]

    def scores(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``(N, 2)``: calibrated probability ``sigmoid(logit / temperature)`` and ``ood_score``
        ``sigmoid(-gate logit)`` (NaN without a gate) of prepared uint8 images."""
        logits, gate = self.outputs(images, batch_size)
        ood = ood_scores(gate) if gate is not None else np.full(len(logits), np.nan)
        return np.stack([calibrated(logits, self.meta.temperature), ood], axis=1)

    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Calibrated probabilities ``sigmoid(logit / temperature)`` for prepared uint8 images."""
        return self.scores(images, batch_size)[:, 0]

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``(N, 2)``: the calibrated probability of each class of :attr:`classes_` for prepared uint8
        images (``1 - p`` and ``p``; scikit-learn style)."""
        positive = self.probabilities(images, batch_size)
        return np.stack([1.0 - positive, positive], axis=1)

    def label_of(self, probability: float) -> str:
        """Class name at the model's threshold."""
        return self.meta.class_names[int(probability >= self.threshold)]

    def predict_images(self, images: Sequence[DecodedImage], names: Sequence[str]) -> list[Prediction]:
        """Predict already decoded images (e.g. web uploads).

        Decode them with :func:`~pneumoscan.preprocess.read_for_model` to get exactly the
        probabilities of :meth:`predict_files` (large JPEGs are decoded at a reduced scale there).
        """
        return self._predict_inputs(names, [model_input(image, self.meta.preprocess) for image in images])

    def _predict_inputs(self, names: Sequence[str], inputs: Sequence[ModelInput]) -> list[Prediction]:
        rows = self.scores(np.stack([i.pixels for i in inputs])) if inputs else np.zeros((0, 2))
        return [self.result(name, row, i) for name, row, i in zip(names, rows, inputs, strict=True)]

    def result(
        self, name: str, scores: np.ndarray, prepared: ModelInput, refuse: bool | None = None
    ) -> Prediction:
        """The :class:`Prediction` for one image's :meth:`scores` row and its checked input.

        ``refuse``: overrides the predictor's own setting for this image (the web API's flag).
        """
        probability, ood = float(scores[0]), float(scores[1])
        ood_score = None if np.isnan(ood) else ood
        reasons = list(prepared.refusals)
        gate = self.meta.gate
        if gate is not None and ood_score is not None and ood_score > gate.threshold:
            reasons.append(
                f"out-of-distribution score {ood_score:.3f} is above the model's limit {gate.threshold:.3f}: "
                "not a frontal chest X-ray like those it was trained on"
            )
        refused = bool(reasons) and (self.refuse if refuse is None else refuse)
        return Prediction(
            name,
            probability,
            None if refused else self.label_of(probability),
            self.threshold,
            list(prepared.warnings),
            ood_score=ood_score,
            out_of_distribution=bool(reasons),
            refused=refused,
            refusal_reason="; ".join(reasons),
        )

    def predict_files(
        self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 64
    ) -> list[Prediction]:
        """Predict files; unreadable ones come back with ``error`` set, in the input order.

        Files are decoded and prepared one at a time and run through the engine in batches, so
        memory stays bounded whatever the number or size of the files. A DICOM file whose header
        refuses it is not decoded at all when refusing (``refused``, no probability).
        """
        results: list[Prediction] = []
        pending: list[tuple[int, ModelInput]] = []

        def flush() -> None:
            done = self._predict_inputs([results[i].path for i, _ in pending], [p for _, p in pending])
            for (i, _), prediction in zip(pending, done, strict=True):
                results[i] = prediction
            pending.clear()

        for path in paths:
            results.append(Prediction(str(path)))
            try:
                image = read_for_model(path, self.meta.preprocess, accept_refused=not self.refuse)
            except InputRefusedError as exc:
                results[-1] = Prediction.of_refused_file(str(path), exc)
                continue
            except ImageReadError as exc:
                results[-1].error = str(exc)
                continue
            pending.append((len(results) - 1, model_input(image, self.meta.preprocess)))
            if len(pending) >= batch_size:
                flush()
        flush()
        return results
