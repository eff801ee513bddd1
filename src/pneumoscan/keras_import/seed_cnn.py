"""Map the layers of the notebook's Keras CNN onto ``seed-cnn``, layer for layer.

The notebook's network: five blocks Conv2D 3x3 valid + ReLU, [Dropout], BatchNormalization,
MaxPooling2D 2x2; Flatten; Dense + ReLU, Dropout, Dense + ReLU, Dropout, Dense(1) + sigmoid. A
ReLU or sigmoid may be the layer's ``activation`` or a layer of its own; Dropout layers are
identities at inference and may sit anywhere. Any widths and any square input size of at least
94 px are accepted. The mapping keeps the function exactly:

- Conv2D kernels HWIO → OIHW; Dense kernels (in, out) → (out, in);
- the first Dense layer reads the Flatten of an NHWC map, seed-cnn the Flatten of an NCHW map,
  so its input columns are permuted from (h, w, c) to (c, h, w) order;
- BatchNormalization divides by sqrt(moving_variance + epsilon) with Keras's epsilon (1e-3 by
  default) where torch uses 1e-5, so the difference is folded into the running variance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from pneumoscan.errors import ModelFileError
from pneumoscan.keras_import.reader import KerasLayer

Check = Callable[[KerasLayer], str | None]


@dataclass
class SeedLayers:
    """The weighted layers of a notebook-shaped Keras model and its input shape."""

    image_size: int
    channels: int
    convs: list[KerasLayer]
    norms: list[KerasLayer]
    dense: list[KerasLayer]


def _pair(value: object) -> object:
    """A Keras size field as a tuple (``3`` means ``(3, 3)``); anything else is returned as it is."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value, value) if _positive(value) else value


def _positive(value: object) -> bool:
    """Whether ``value`` is a positive integer (a layer size)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_PAIRS = ("kernel_size", "strides", "pool_size", "dilation_rate")


def _differs(layer: KerasLayer, **expected: object) -> str | None:
    """The first config field of ``layer`` that is not as expected (a set lists alternatives)."""
    for key, want in expected.items():
        if key not in layer.config:
            continue  # older Keras versions leave out fields that have their default
        got = _pair(layer.config[key]) if key in _PAIRS else layer.config[key]
        if not (got in want if isinstance(want, frozenset) else got == want):
            return f"{key} {got!r}"
    return None


def _kind(*kinds: str) -> Check:
    return lambda layer: None if layer.kind in kinds else f"a {layer.kind} layer"


def _conv(layer: KerasLayer) -> str | None:
    if layer.kind != "Conv2D":
        return f"a {layer.kind} layer"
    if not _positive(layer.config.get("filters")):
        return f"filters {layer.config.get('filters')!r}"
    return _differs(
        layer,
        kernel_size=(3, 3),
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
        groups=1,
        data_format="channels_last",
        activation=frozenset({"relu", "linear"}),
    )


def _norm(layer: KerasLayer) -> str | None:
    if layer.kind != "BatchNormalization":
        return f"a {layer.kind} layer"
    axis = layer.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    return None if axis in (-1, 3) else f"axis {axis!r}"


def _pool(layer: KerasLayer) -> str | None:
    if layer.kind != "MaxPooling2D":
        return f"a {layer.kind} layer"
    strides = _pair(layer.config.get("strides"))
    if strides not in (None, (2, 2)):
        return f"strides {strides!r}"
    return _differs(layer, pool_size=(2, 2), padding="valid", data_format="channels_last")


def _activation(name: str) -> Check:
    def check(layer: KerasLayer) -> str | None:
        if layer.kind == "Activation":
            return _differs(layer, activation=name)
        if name == "relu" and layer.kind == "ReLU":
            return _differs(layer, max_value=None, negative_slope=0.0, threshold=0.0)
        return f"a {layer.kind} layer"

    return check


def _dense(activation: str, units: int | None = None) -> Check:
    def check(layer: KerasLayer) -> str | None:
        if layer.kind != "Dense":
            return f"a {layer.kind} layer"
        got = layer.config.get("units")
        if not _positive(got) or (units is not None and got != units):
            return f"units {got!r}"
        return _differs(layer, activation=frozenset({activation, "linear"}))

    return check


class _Cursor:
    """Walks the layers (Dropout and InputLayer skipped), failing at the first that does not fit."""

    def __init__(self, source: str, layers: list[KerasLayer]) -> None:
        self.source = source
        self.layers = [(i, lay) for i, lay in enumerate(layers) if lay.kind not in ("Dropout", "InputLayer")]
        self.at = 0

    def take(self, expected: str, check: Check) -> KerasLayer:
        if self.at >= len(self.layers):
            self.fail(f"the model ends where the notebook's seed-cnn has {expected}")
        index, layer = self.layers[self.at]
        problem = check(layer)
        if problem is not None:
            self.fail(
                f"layer {index} '{layer.name}' ({layer.kind}) does not match the notebook's seed-cnn: "
                f"expected {expected}, found {problem}"
            )
        self.at += 1
        return layer

    def activation(self, layer: KerasLayer, name: str) -> None:
        """Take a separate activation layer after ``layer`` if its own activation is linear."""
        if layer.config.get("activation") == "linear":
            self.take(f"a {name} after '{layer.name}'", _activation(name))

    def fail(self, message: str) -> NoReturn:
        raise ModelFileError(f"{self.source}: {message}; import-keras reads only that architecture")


def match_seed_cnn(source: str, layers: list[KerasLayer]) -> SeedLayers:
    """Check that ``layers`` are the notebook's network; one-line error naming the first that is not."""
    cursor = _Cursor(source, layers)
    convs, norms, dense = [], [], []
    for block in range(1, 6):
        convs.append(cursor.take(f"block {block}'s Conv2D 3x3 valid (ReLU)", _conv))
        cursor.activation(convs[-1], "relu")
        norms.append(cursor.take(f"block {block}'s BatchNormalization", _norm))
        cursor.take(f"block {block}'s MaxPooling2D 2x2", _pool)
    cursor.take("Flatten", _kind("Flatten"))
    for position, (activation, units) in enumerate([("relu", None), ("relu", None), ("sigmoid", 1)], 1):
        dense.append(cursor.take(f"Dense layer {position} ({activation})", _dense(activation, units)))
        cursor.activation(dense[-1], activation)
    if cursor.at < len(cursor.layers):
        index, layer = cursor.layers[cursor.at]
        cursor.fail(
            f"layer {index} '{layer.name}' ({layer.kind}) follows the notebook's last Dense(1, sigmoid)"
        )
    size, channels = _input_shape(source, layers)
    return SeedLayers(size, channels, convs, norms, dense)


def _input_shape(source: str, layers: list[KerasLayer]) -> tuple[int, int]:
    """(side, channels) of the model's input: the InputLayer's or the first layer's batch shape."""
    shape: Any = None
    for layer in layers[:2]:
        shape = shape or layer.config.get("batch_shape") or layer.config.get("batch_input_shape")
    square = (
        isinstance(shape, list | tuple) and len(shape) == 4 and _positive(shape[1]) and shape[1] == shape[2]
    )
    if not square or shape[3] not in (1, 3):
        raise ModelFileError(
            f"{source}: input shape {shape!r} is not a fixed square image of 1 or 3 channels "
            "(batch, side, side, channels); import-keras needs the notebook's fixed input size"
        )
    return int(shape[1]), int(shape[3])


def _weights(source: str, layer: KerasLayer, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The weight arrays of ``layer`` by role, each checked against its shape in ``shapes`` (Keras
    order) before it is read, so a file that declares huge arrays is refused without reading them."""
    roles = list(shapes)
    if len(layer.weights) != len(roles):
        raise ModelFileError(
            f"{source}: layer '{layer.name}' has {len(layer.weights)} weight arrays, expected "
            f"{len(roles)} ({', '.join(roles)}); the file is damaged or incomplete"
        )
    for role, array in zip(roles, layer.weights, strict=True):
        shape, kind = tuple(array.shape), getattr(array.dtype, "kind", "")
        if shape != shapes[role] or kind not in "fiu":
            raise ModelFileError(
                f"{source}: layer '{layer.name}' declares its {role} as {shape} {array.dtype} where "
                f"seed-cnn needs {shapes[role]} numbers; the file is damaged or inconsistent"
            )
    return {role: np.asarray(w, dtype=np.float64) for role, w in zip(roles, layer.weights, strict=True)}


def _with_bias(layer: KerasLayer, kernel: tuple[int, ...], out: int) -> dict[str, tuple[int, ...]]:
    return {"kernel": kernel, **({"bias": (out,)} if layer.config.get("use_bias", True) else {})}


def conv_weights(source: str, layer: KerasLayer, cin: int, cout: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernel in OIHW order and bias of a 3x3 Conv2D layer from ``cin`` to ``cout`` channels."""
    w = _weights(source, layer, _with_bias(layer, (3, 3, cin, cout), cout))
    kernel = w["kernel"].transpose(3, 2, 0, 1)
    return kernel, w.get("bias", np.zeros(kernel.shape[0]))


def dense_weights(source: str, layer: KerasLayer, inputs: int, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight in (out, in) order and bias of a Dense layer from ``inputs`` to ``outputs`` units."""
    w = _weights(source, layer, _with_bias(layer, (inputs, outputs), outputs))
    weight = w["kernel"].T
    return weight, w.get("bias", np.zeros(weight.shape[0]))


def nhwc_to_nchw_columns(weight: np.ndarray, side: int, channels: int) -> np.ndarray:
    """Permute a Dense weight's input columns from a flattened (h, w, c) map to (c, h, w)."""
    out = weight.shape[0]
    return weight.reshape(out, side, side, channels).transpose(0, 3, 1, 2).reshape(out, -1)


def norm_weights(source: str, layer: KerasLayer, n: int, torch_eps: float) -> dict[str, np.ndarray]:
    """weight, bias, running_mean and running_var of a BatchNormalization layer of ``n`` channels
    for torch's epsilon."""
    scale, center = layer.config.get("scale", True), layer.config.get("center", True)
    roles = ["gamma"] * bool(scale) + ["beta"] * bool(center) + ["moving_mean", "moving_variance"]
    w = _weights(source, layer, dict.fromkeys(roles, (n,)))
    epsilon = layer.config.get("epsilon", 1e-3)
    if not isinstance(epsilon, int | float) or not epsilon >= 0:
        raise ModelFileError(f"{source}: layer '{layer.name}' has epsilon {epsilon!r}; the file is damaged")
    eps = float(epsilon)
    return {
        "weight": w.get("gamma", np.ones(n)),
        "bias": w.get("beta", np.zeros(n)),
        "running_mean": w["moving_mean"],
        "running_var": np.maximum(w["moving_variance"] + eps - torch_eps, 0.0),
    }
