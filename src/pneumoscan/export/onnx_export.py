"""Export a ``.safetensors`` model file to an ONNX graph that :mod:`pneumoscan.engines.onnx_engine` runs.

The graph is the network in fp32 eval mode, its own first layer (``InputNormalization``) included:
input ``image``, float32 ``(N, C, S, S)`` in [0, 1] with a dynamic batch dimension N (exactly what
:func:`pneumoscan.preprocess.to_model_input` makes); output ``logit``, float32 ``(N,)``, and for a
model with an out-of-distribution gate also ``chest_logit`` ``(N,)`` (the gate travels in the graph).
Decoding, crop/resize, calibration and the threshold stay outside the graph and are driven by the
model's :class:`~pneumoscan.model_file.ModelMeta`, stored in the ONNX ``metadata_props``.

Uses the ``torch.export``-based exporter (``dynamo=True``), which needs ``onnx`` and ``onnxscript``.
With ``int8_calibration`` the graph is then quantized to int8 (:mod:`pneumoscan.export.quantize`,
which also needs ``onnxruntime``); the metadata then says so under ``quantization``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pneumoscan.atomic import atomic_path
from pneumoscan.engines.onnx_engine import GATE_OUTPUT, INPUT, META_KEY, OUTPUT
from pneumoscan.errors import PneumoscanError
from pneumoscan.model_file import ModelMeta

if TYPE_CHECKING:
    import onnx

    from pneumoscan.models.common import XrayNetwork

MIN_OPSET = 18  # the lowest opset the torch.export-based exporter has implementations for
CONTRACT = (
    "pneumoscan: input 'image' float32 (N, C, S, S) in [0, 1]; output 'logit' (N,) and, with a gate, "
    "'chest_logit' (N,); probability = sigmoid(logit / temperature), ood_score = sigmoid(-chest_logit); "
    "see metadata_props['pneumoscan']"
)


def export_onnx(
    model_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    opset: int | None = None,
    *,
    int8_calibration: str | os.PathLike[str] | None = None,
    calibration_images: int = 256,
) -> Path:
    """Export a model file to ``out_path`` (``.onnx``, written atomically); returns the path.

    ``opset`` is the ONNX opset to target (default: the exporter's recommended one).
    ``int8_calibration``: a folder of films; with it the graph is quantized to int8, calibrated on
    up to ``calibration_images`` of them.
    """
    onnx_lib = _require_exporter()
    out = Path(out_path)
    if out.suffix.lower() != ".onnx":
        raise PneumoscanError(f"{out}: the output file name must end in .onnx")
    _check_opset(onnx_lib, opset)
    from pneumoscan.engines.torch_engine import load_network
    from pneumoscan.models import inference_network

    meta, net = load_network(model_path)
    films = None
    if int8_calibration is not None:
        from pneumoscan.export.quantize import calibration_films

        films = calibration_films(int8_calibration, meta.preprocess, calibration_images)
    model = _trace(inference_network(net), meta, opset)
    with atomic_path(out) as tmp:
        props = metadata_props(meta)
        if films is not None:
            from pneumoscan.export.quantize import QUANTIZATION, quantize_graph

            quantize_graph(model, tmp, films, meta.preprocess)
            model = onnx_lib.load(tmp)
            props["quantization"] = QUANTIZATION
        onnx_lib.helper.set_model_props(model, props)
        model.doc_string = CONTRACT
        onnx_lib.save_model(model, tmp)
        onnx_lib.checker.check_model(tmp, full_check=True)
    return out


def metadata_props(meta: ModelMeta) -> dict[str, str]:
    """ONNX ``metadata_props``: the full :class:`ModelMeta` JSON and a few keys readable at a glance."""
    return {
        META_KEY: meta.model_dump_json(),
        "architecture": meta.model.architecture,
        "image_size": str(meta.preprocess.image_size),
        "channels": str(meta.preprocess.channels),
        "threshold": str(meta.threshold),
        "temperature": str(meta.temperature),
        "class_names": ",".join(meta.class_names),
        "film_classes": ",".join(meta.film_classes),
    }


def rewrite_metadata(
    onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str], meta: ModelMeta
) -> Path:
    """Copy an exported graph to ``out_path`` (atomically) with ``meta`` as its metadata.

    The graph and any other property (e.g. ``quantization``) are kept.  Needs ``onnx`` but not torch.
    """
    try:
        import onnx
    except ImportError:
        raise PneumoscanError("rewriting an ONNX model needs onnx: pip install onnx") from None
    model = onnx.load(str(onnx_path))
    props = {prop.key: prop.value for prop in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, **metadata_props(meta)})
    out = Path(out_path)
    with atomic_path(out) as tmp:
        onnx.save_model(model, tmp)
    return out


def _require_exporter() -> ModuleType:
    try:
        import onnx
        import onnxscript  # noqa: F401  (used by torch.onnx.export)
        import torch  # noqa: F401
    except ImportError as exc:
        raise PneumoscanError(
            f"exporting to ONNX needs {exc.name}: pip install 'pneumoscan[export]' (PyTorch installed first)"
        ) from exc
    return onnx


def _check_opset(onnx_lib: ModuleType, opset: int | None) -> None:
    highest = onnx_lib.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= highest:
        raise PneumoscanError(f"ONNX opset {opset} is not supported; choose {MIN_OPSET} to {highest}")


class _NoTorchvisionNote(logging.Filter):
    """Drops torch's "torchvision is not installed. Skipping torchvision::nms" (one per torchvision
    op, on every export without torchvision): pneumoscan's networks use no torchvision op."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torchvision is not installed" not in record.getMessage()


@contextmanager
def _without_torchvision_notes() -> Iterator[None]:
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    note = _NoTorchvisionNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def _trace(net: XrayNetwork, meta: ModelMeta, opset: int | None) -> onnx.ModelProto:
    """The network (with its gate, if any) as an fp32 eval-mode ONNX graph with a dynamic batch dimension."""
    import torch

    side = meta.preprocess.image_size
    example = torch.rand(2, meta.preprocess.channels, side, side)  # batch 2: 1 would be specialised
    gated = net.gate is not None

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net.float().eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            return self.net.forward_with_gate(x) if gated else self.net(x)

    with _without_torchvision_notes():
        program = torch.onnx.export(
            Graph().eval(),
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT, GATE_OUTPUT] if gated else [OUTPUT],
            opset_version=opset,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns the program
    model = program.model_proto
    reached = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and reached != opset:
        raise PneumoscanError(f"this model cannot be converted to ONNX opset {opset}; try opset {reached}")
    return model
