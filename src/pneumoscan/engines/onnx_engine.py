"""ONNX engine: compute logits with onnxruntime from a ``.onnx`` file made by ``pneumoscan export``.

Torch-free: only numpy, onnxruntime and pneumoscan's torch-free modules are imported, so a serving
install without PyTorch can run :class:`~pneumoscan.predict.Predictor` with ``engine="onnx"``.
The graph takes ``image`` (float32 ``(N, C, S, S)`` in [0, 1], as made by
:func:`pneumoscan.preprocess.to_model_input`) and returns ``logit`` ``(N,)`` and, for a model with an
out-of-distribution gate, ``chest_logit`` ``(N,)``; the model file's
:class:`~pneumoscan.model_file.ModelMeta` travels in the ONNX ``metadata_props`` under
:data:`META_KEY`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from pneumoscan.errors import ModelFileError, PneumoscanError
from pneumoscan.model_file import ModelMeta, parse_meta
from pneumoscan.model_source import EXPORT_HINT, require_model_file

INPUT = "image"
OUTPUT = "logit"
GATE_OUTPUT = "chest_logit"
META_KEY = "pneumoscan"


def _onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError:
        raise PneumoscanError(
            "the onnx engine needs onnxruntime: pip install onnxruntime (or 'pneumoscan[onnx]')"
        ) from None
    return onnxruntime


def _open_session(path: Path) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 0
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors share no base class below Exception
        reason = str(exc).splitlines()[0].rsplit("failed:", 1)[-1].strip() if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path}: not a loadable ONNX model or damaged ({reason}); {EXPORT_HINT}"
        ) from exc


def _read_meta(session: Any, path: Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an ONNX model's ``metadata_props``."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise ModelFileError(f"{path}: an ONNX file without pneumoscan metadata; {EXPORT_HINT}")
    return parse_meta(raw, str(path), EXPORT_HINT)


def _check_graph(session: Any, meta: ModelMeta, path: Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    side = meta.preprocess.image_size
    expected = [meta.preprocess.channels, side, side]
    names = [o.name for o in outputs]
    if [i.name for i in inputs] != [INPUT] or names not in ([OUTPUT], [OUTPUT, GATE_OUTPUT]):
        raise ModelFileError(
            f"{path}: the graph is not a pneumoscan export (needs input 'image', output 'logit' "
            "and optionally 'chest_logit')"
        )
    if list(inputs[0].shape[1:]) != expected:
        raise ModelFileError(
            f"{path}: graph input shape {inputs[0].shape[1:]} does not match its metadata {expected}; "
            f"{EXPORT_HINT}"
        )


class OnnxEngine:
    """Computes logits with onnxruntime on the CPU (all cores, full graph optimisation)."""

    name = "onnx"

    def __init__(self, meta: ModelMeta, session: Any) -> None:
        self.meta = meta
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OnnxEngine:
        """Open a ``.onnx`` file written by :func:`pneumoscan.export.export_onnx`."""
        path = Path(path)
        require_model_file(path)
        session = _open_session(path)
        meta = _read_meta(session, path)
        _check_graph(session, meta, path)
        return cls(meta, session)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pneumonia logits and gate logits (None without a gate) for a float32 ``(N, C, S, S)`` batch
        from :func:`pneumoscan.preprocess.to_model_input`."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        results = self.session.run(self.outputs, {INPUT: x})
        return np.asarray(results[0]), (np.asarray(results[1]) if len(results) > 1 else None)
