"""Post-training int8 quantization of an exported ONNX graph (onnxruntime static quantization).

Every convolution but the first gets int8 weights (one scale per output channel) and uint8
activations, in QDQ form, with activation ranges measured by running calibration films through
the float graph.  The first convolution stays in float: it sees the per-image z-scored input,
and quantizing it cost the bundled model 0.04 ROC-AUC on ``test-dev``; left in float, the int8
graph gave the same ``test-dev`` accuracy and ROC-AUC as the float one at about 1.3x its speed
(``docs/onnx.md``).  Calibration films should look like the films the model will see, e.g. its
training folder; a few hundred are enough.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.config import PreprocessConfig
from pneumoscan.data.imageio import find_image_files
from pneumoscan.engines.onnx_engine import INPUT
from pneumoscan.errors import ImageReadError, PneumoscanError
from pneumoscan.preprocess import load_prepared, to_model_input

if TYPE_CHECKING:
    import onnx

QUANTIZATION = "int8: QDQ, per-channel int8 weights, uint8 activations; first convolution in float"
_BATCH = 16


def calibration_films(folder: str | os.PathLike[str], cfg: PreprocessConfig, count: int) -> np.ndarray:
    """Up to ``count`` prepared uint8 films, evenly spread over the image files under ``folder``.

    Unreadable files are skipped; a folder without a readable image is an error.
    """
    root = Path(folder)
    if count < 1:
        raise PneumoscanError(f"{count} calibration images: use at least 1 (a few hundred is best)")
    if not root.is_dir():
        raise PneumoscanError(f"{root}: calibration folder not found; pass a folder of films")
    paths = sorted(find_image_files(root))
    picked = [paths[round(i)] for i in np.linspace(0, max(len(paths) - 1, 0), min(count, len(paths)))]
    films = []
    for path in picked:
        try:
            films.append(load_prepared(path, cfg))
        except ImageReadError:
            continue
    if not films:
        raise PneumoscanError(f"{root}: no readable image files to calibrate int8 quantization on")
    return np.stack(films)


def quantize_graph(model: onnx.ModelProto, out: Path, films: np.ndarray, cfg: PreprocessConfig) -> None:
    """Write the int8 version of the float graph ``model`` to ``out``, calibrated on prepared ``films``."""
    import onnx

    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise PneumoscanError("int8 export needs onnxruntime: pip install 'pneumoscan[onnx]'") from None

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(films), _BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._batches, None)
            return None if start is None else {INPUT: to_model_input(films[start : start + _BATCH], cfg)}

    with tempfile.TemporaryDirectory() as tmp:
        float_path, prepared_path = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        onnx.save_model(model, float_path)
        # ONNX's own shape inference is enough for a CNN; onnxruntime's symbolic one (made for
        # transformers) fails on the gate head's Concat of pooled features
        quant_pre_process(str(float_path), str(prepared_path), skip_symbolic_shape=True)
        convs = [node.name for node in onnx.load(prepared_path).graph.node if node.op_type == "Conv"]
        quantize_static(
            str(prepared_path),
            str(out),
            Batches(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=convs[:1],
        )
