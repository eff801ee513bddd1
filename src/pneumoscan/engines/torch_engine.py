"""PyTorch engine: rebuild a network from a model file and compute logits on batches."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from pneumoscan.errors import ModelFileError, PneumoscanError
from pneumoscan.hardware import use_bf16
from pneumoscan.model_file import ModelMeta, read_model
from pneumoscan.models import build_model, inference_network
from pneumoscan.models.common import XrayNetwork


def network_tensors(net: nn.Module) -> dict[str, np.ndarray]:
    """State dict of ``net`` as contiguous numpy arrays (floating point as float32)."""
    out = {}
    for name, value in net.state_dict().items():
        value = value.detach().cpu()
        out[name] = (value.float() if value.is_floating_point() else value).contiguous().numpy()
    return out


def network_from_meta(meta: ModelMeta, tensors: dict[str, np.ndarray], source: str = "model") -> XrayNetwork:
    """Build the architecture named in ``meta`` and load ``tensors`` into it (eval mode).

    The architecture is first built without memory (on the ``meta`` device) and its shapes compared
    with the file's tensors, so options that describe a huge network fail before anything is allocated:
    the memory used is bounded by the size of the file's own weights.
    """
    try:
        with torch.device("meta"):
            planned = build_model(meta.model, meta.preprocess).state_dict()
        shapes = {name: _shape(value.shape) for name, value in planned.items()}
    except PneumoscanError as exc:
        raise ModelFileError(f"{source}: {exc}") from exc
    found = {name: _shape(value.shape) for name, value in tensors.items()}
    if shapes != found:
        differ = sorted(set(shapes) ^ set(found)) or [k for k in sorted(shapes) if shapes[k] != found[k]]
        first = differ[0]
        raise ModelFileError(
            f"{source}: weights do not fit architecture {meta.model.architecture!r} with options "
            f"{meta.model.options} (tensor {first!r}: file {found.get(first)}, network {shapes.get(first)})"
        )
    net = build_model(meta.model, meta.preprocess)
    state = {name: torch.from_numpy(np.array(value)) for name, value in tensors.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{source}: weights do not fit architecture {meta.model.architecture!r} ({first})"
        ) from exc
    return net.eval()


def _shape(shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    """A tensor shape, with a scalar written as one element (safetensors stores BatchNorm counters so)."""
    return tuple(shape) or (1,)


def load_network(path: str | os.PathLike[str]) -> tuple[ModelMeta, XrayNetwork]:
    """Read a model file and return its metadata and network."""
    meta, tensors = read_model(path)
    return meta, network_from_meta(meta, tensors, str(path))


class TorchEngine:
    """Computes logits with PyTorch (channels_last), in fp32 unless ``precision`` asks for bf16.

    fp32 by default on every CPU, so a film gets the same probability (within 1e-3) with either engine
    on any machine; ``precision="bf16"`` (``--bf16``) trades that for speed where the CPU has native
    bf16, and ``"auto"`` uses bf16 only there (:func:`pneumoscan.hardware.use_bf16`).

    ``net`` is the network as trained (Grad-CAM hooks into it); logits come from its
    :func:`~pneumoscan.models.inference_network`, which computes the same function faster.
    """

    name = "torch"

    def __init__(self, meta: ModelMeta, net: XrayNetwork, precision: str = "32") -> None:
        self.meta = meta
        self.net = net.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.inference_net = inference_network(self.net)
        self.bf16 = use_bf16(precision)

    @classmethod
    def load(cls, path: str | os.PathLike[str], precision: str = "32") -> TorchEngine:
        """Load a ``.safetensors`` model file."""
        meta, net = load_network(path)
        return cls(meta, net, precision)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pneumonia logits and gate logits (None without a gate) for a float32 ``(N, C, S, S)`` batch
        from :func:`pneumoscan.preprocess.to_model_input`."""
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            net = self.inference_net
            if net.gate is None:
                return net(x).float().numpy(), None
            logits, gate = net.forward_with_gate(x)
            return logits.float().numpy(), gate.float().numpy()
