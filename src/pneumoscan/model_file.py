"""The self-describing model file: safetensors weights plus JSON metadata in the same file.

The safetensors header's ``__metadata__`` holds one key, ``pneumoscan``, whose JSON value is a
:class:`ModelMeta`: format version, architecture and options, the preprocessing contract, the
calibration temperature and operating threshold, class names (outputs and the film classes it
was trained on), the full training config, the
metrics measured when it was saved, whether it was trained on synthetic data, the package version,
its out-of-distribution gate, the heat map it shows, and the history of ``pneumoscan calibrate``
runs (older files without them load with no gate, Grad-CAM of the last stage and an empty history).
Loading never unpickles anything: safetensors stores raw tensors only.  This module is torch-free
(numpy in, numpy out), so the ONNX engine and tools that only read metadata don't need PyTorch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_numpy

from pneumoscan.atomic import atomic_write_bytes
from pneumoscan.classes import OUTPUT_CLASSES
from pneumoscan.config import Config, ExplainConfig, ModelConfig, PreprocessConfig, first_error
from pneumoscan.errors import ModelFileError
from pneumoscan.model_source import require_model_file

FORMAT = "pneumoscan-model"
FORMAT_VERSION = 1
_KEY = "pneumoscan"


class GateMeta(BaseModel):
    """The out-of-distribution gate of a model: how its score is read and where it refuses.

    ``ood_score = 1 - sigmoid(gate logit)`` is the gate head's belief that an image is not a frontal
    chest film like the training films; an image is refused when ``ood_score > threshold``.
    """

    threshold: float = Field(gt=0, lt=1)
    rule: str
    validation: dict[str, Any] = Field(default_factory=dict)


class OperatingPoint(BaseModel):
    """A model's calibration: temperature, threshold and the rule that chose the threshold."""

    temperature: float
    threshold: float
    threshold_rule: str


class CalibrationRecord(BaseModel):
    """One ``pneumoscan calibrate`` run: the films it was fitted on, and the values before and after."""

    date: str
    data: list[str]
    split: str
    sites: list[str]
    films: dict[str, int]  # per class name
    patients: int
    content_hash: str  # sha256 over the sorted "sha1-of-file-bytes label" lines of the films
    previous: OperatingPoint
    new: OperatingPoint
    metrics_before: dict[str, float | None] = Field(default_factory=dict)  # on the same films
    metrics_after: dict[str, float | None] = Field(default_factory=dict)
    # The threshold rule and, for a target rule, its target, its confidence (None: the point rule)
    # and the one-sided Clopper-Pearson lower bound of the targeted metric reached on these films;
    # counts: tp/fn/tn/fp at the new threshold.  Records written before these fields read empty.
    rule: str = ""
    target: float | None = None
    confidence: float | None = None
    bound: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    refused: int = 0  # films the model's gate refused, left out
    forced: bool = False  # written with --force although the films could not support it

    def summary(self) -> str:
        """One line: when, on what, and what changed."""
        films = ", ".join(f"{count} {name}" for name, count in self.films.items())
        old, new = self.previous, self.new
        forced = "; FORCED although the films could not support it" if self.forced else ""
        return (
            f"{self.date}: {', '.join(self.sites)} ({films}; split {self.split}; "
            f"sha256 {self.content_hash[:12]}): temperature {old.temperature:.3f} -> {new.temperature:.3f}, "
            f"threshold {old.threshold:.3f} -> {new.threshold:.3f} ({new.threshold_rule}{forced})"
        )


class ModelMeta(BaseModel):
    """Everything needed to rebuild, run and describe a trained model.

    ``gate`` is None for models without an out-of-distribution gate (files made before it existed);
    ``explain`` is the heat map the model shows (files made before it existed: Grad-CAM of the last stage).
    ``class_names`` are the model's two outputs by target (:data:`pneumoscan.classes.OUTPUT_CLASSES`);
    ``film_classes`` the kinds of film it was trained on (e.g. NORMAL, PNEUMONIA and OTHER as
    negatives; files made before OTHER existed: NORMAL and PNEUMONIA).
    """

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    model: ModelConfig
    preprocess: PreprocessConfig
    threshold: float = Field(0.5, gt=0, lt=1)
    threshold_rule: str = "fixed at 0.5"
    temperature: float = Field(1.0, gt=0)
    class_names: tuple[str, str] = OUTPUT_CLASSES  # the outputs, by target (PNEUMONIA last)
    film_classes: tuple[str, ...] = OUTPUT_CLASSES  # the film classes it was trained on; older files lack it
    config: Config | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    package_version: str = ""
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    name: str = ""
    gate: GateMeta | None = None
    synthetic_data: bool = False  # trained on pneumoscan.synthetic shapes; older files lack it: False
    calibration_history: list[CalibrationRecord] = Field(default_factory=list)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    def operating_point(self) -> OperatingPoint:
        """The current temperature, threshold and rule."""
        return OperatingPoint(
            temperature=self.temperature, threshold=self.threshold, threshold_rule=self.threshold_rule
        )

    def model_id(self) -> str:
        """Short human-readable identity: name or architecture, creation time, last recalibration."""
        base = f"{self.name or self.model.architecture}@{self.created}"
        return f"{base}/calibrated@{self.calibration_history[-1].date}" if self.calibration_history else base

    def synthetic_warning(self) -> str:
        """A warning to show on every use of a model trained on synthetic data; empty otherwise."""
        if not self.synthetic_data:
            return ""
        return (
            f"{self.model_id()} was trained on synthetic shapes (pneumoscan demo), not on radiographs; "
            "its probabilities for real films mean nothing. Use the bundled model or train on real data"
        )


def save_model(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], meta: ModelMeta) -> Path:
    """Write weights and metadata to ``path`` atomically; returns the path."""
    from pneumoscan import __version__

    meta = meta.model_copy(update={"package_version": meta.package_version or __version__})
    contiguous = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    data = save_numpy(contiguous, metadata={_KEY: meta.model_dump_json()})
    atomic_write_bytes(path, data)
    return Path(path)


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """Read only the metadata of a model file."""
    return _open(path, load_tensors=False)[0]


def read_model(path: str | os.PathLike[str]) -> tuple[ModelMeta, dict[str, np.ndarray]]:
    """Read metadata and weights (as numpy arrays) of a model file."""
    return _open(path, load_tensors=True)


def _open(path: str | os.PathLike[str], load_tensors: bool) -> tuple[ModelMeta, dict[str, np.ndarray]]:
    path = Path(path)
    require_model_file(path)
    try:
        with safe_open(str(path), framework="np") as handle:
            raw = (handle.metadata() or {}).get(_KEY)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if load_tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path}: not a pneumoscan model file or damaged ({reason})") from exc
    if raw is None:
        raise ModelFileError(
            f"{path}: a safetensors file without pneumoscan metadata; not a pneumoscan model"
        )
    return parse_meta(raw, str(path)), tensors


def parse_meta(raw: str, source: str, hint: str = "") -> ModelMeta:
    """Validate the JSON metadata of a model file (``hint`` is appended to error messages)."""
    suffix = f"; {hint}" if hint else ""
    try:
        fields = json.loads(raw)
        if fields.get("format") != FORMAT or fields.get("format_version", 0) > FORMAT_VERSION:
            raise ModelFileError(
                f"{source}: model format {fields.get('format')!r} v{fields.get('format_version')} is not "
                f"supported by this pneumoscan (reads {FORMAT} v{FORMAT_VERSION}); upgrade pneumoscan"
            )
        return ModelMeta.model_validate(fields)
    except ValidationError as exc:  # before ValueError, its base class: name the field
        raise ModelFileError(f"{source}: damaged pneumoscan metadata ({first_error(exc)}){suffix}") from exc
    except (ValueError, AttributeError) as exc:
        reason = str(exc).splitlines()[0]
        raise ModelFileError(f"{source}: damaged pneumoscan metadata ({reason}){suffix}") from exc
    except RecursionError:  # JSON nested thousands of levels deep: no model's metadata is
        raise ModelFileError(f"{source}: damaged pneumoscan metadata (nested too deeply){suffix}") from None
