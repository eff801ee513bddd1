"""``pneumoscan import-keras``: the notebook's own Keras weights as a pneumoscan model file.

Reads a ``.h5`` or ``.keras`` file with h5py (the ``keras`` extra; no TensorFlow), checks that it
is the notebook's network, maps its weights onto ``seed-cnn`` and writes a model file with the
``seed`` recipe's preprocessing at the file's input size, threshold 0.5 and temperature 1, so
``evaluate``, ``predict``, heat maps, ``export`` and ``serve`` work on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from pneumoscan.config import ModelConfig, seed_recipe
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.errors import ModelFileError, PneumoscanError
from pneumoscan.keras_import.reader import keras_weights, read_keras
from pneumoscan.keras_import.seed_cnn import (
    SeedLayers,
    conv_weights,
    dense_weights,
    match_seed_cnn,
    nhwc_to_nchw_columns,
    norm_weights,
)
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.models import build_model, check_model
from pneumoscan.models.seed_cnn import feature_side

__all__ = ["import_keras"]

_KINDS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def import_keras(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert the Keras model file ``path`` into the pneumoscan model file ``out``; returns ``out``."""
    source = str(path)
    keras = read_keras(path)  # the layers' configs; their weights are read once they are known to fit
    plan = match_seed_cnn(source, keras.layers)
    if feature_side(plan.image_size) < 1 or plan.image_size > 1024:
        raise ModelFileError(f"{source}: input size {plan.image_size} px; seed-cnn takes 94 to 1024 px")
    config = seed_recipe()
    config.preprocess.image_size = plan.image_size
    config.preprocess.channels = 1 if plan.channels == 1 else 3
    config.model = ModelConfig(
        architecture="seed-cnn",
        options={
            "widths": [int(conv.config["filters"]) for conv in plan.convs],
            "dense": [int(d.config["units"]) for d in plan.dense[:2]],
        },
    )
    try:
        parameters = check_model(config.model, config.preprocess)
    except PneumoscanError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    net = build_model(config.model, config.preprocess)
    # float64 arrays at most, plus HDF5's own structures: a weights file larger than this is not the model
    with keras_weights(keras, max_bytes=8 * parameters + (1 << 20)):
        _load(source, net, plan)
    meta = ModelMeta(
        model=config.model,
        preprocess=config.preprocess,
        threshold_rule="fixed at 0.5 (imported from Keras)",
        config=config,
        name=f"seed-cnn imported from Keras {keras.keras_version} file {Path(path).name}",
    )
    return save_model(out, network_tensors(net), meta)


def _load(source: str, net: nn.Module, plan: SeedLayers) -> None:
    """Copy the Keras weights of ``plan`` into ``net`` (a seed-cnn of the same widths)."""
    modules = {kind: [(n, m) for n, m in net.named_modules() if isinstance(m, kind)] for kind in _KINDS}
    arrays: list[tuple[str, str, np.ndarray]] = []  # (Keras layer, state-dict key, value)
    for (prefix, conv), layer in zip(modules[nn.Conv2d], plan.convs, strict=True):
        conv = cast(nn.Conv2d, conv)
        kernel, bias = conv_weights(source, layer, conv.in_channels, conv.out_channels)
        arrays += [(layer.name, f"{prefix}.weight", kernel), (layer.name, f"{prefix}.bias", bias)]
    for (prefix, norm), layer in zip(modules[nn.BatchNorm2d], plan.norms, strict=True):
        norm = cast(nn.BatchNorm2d, norm)
        values = norm_weights(source, layer, norm.num_features, float(norm.eps))
        arrays += [(layer.name, f"{prefix}.{key}", value) for key, value in values.items()]
    side, last_width = feature_side(plan.image_size), int(plan.convs[-1].config["filters"])
    for i, ((prefix, linear), layer) in enumerate(zip(modules[nn.Linear], plan.dense, strict=True)):
        linear = cast(nn.Linear, linear)
        weight, bias = dense_weights(source, layer, linear.in_features, linear.out_features)
        if i == 0:
            weight = nhwc_to_nchw_columns(weight, side, last_width)
        arrays += [(layer.name, f"{prefix}.weight", weight), (layer.name, f"{prefix}.bias", bias)]
    state = net.state_dict()
    for _, key, value in arrays:  # every shape was checked before it was read
        state[key] = torch.as_tensor(value, dtype=torch.float32)
    net.load_state_dict(state)
