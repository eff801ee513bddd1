"""PyTorch engine: rebuild a network from a model file and compute logits on batches."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from pneumoscan.errors import ModelFileError
from pneumoscan.hardware import use_bf16
from pneumoscan.model_file import ModelMeta, read_model
from pneumoscan.models import build_model, inference_network


def network_tensors(net: nn.Module) -> dict[str, np.ndarray]:
    """State dict of ``net`` as contiguous numpy arrays (floating point as float32)."""
    out = {}
    for name, value in net.state_dict().items():
        value = value.detach().cpu()
        out[name] = (value.float() if value.is_floating_point() else value).contiguous().numpy()
    return out


def network_from_meta(meta: ModelMeta, tensors: dict[str, np.ndarray], source: str = "model") -> nn.Module:
    """Build the architecture named in ``meta`` and load ``tensors`` into it (eval mode)."""
    net = build_model(meta.model, meta.preprocess)
    state = {name: torch.from_numpy(np.array(value)) for name, value in tensors.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{source}: weights do not fit architecture {meta.model.architecture!r} ({first})"
        ) from None
    return net.eval()


def load_network(path: str | os.PathLike[str]) -> tuple[ModelMeta, nn.Module]:
    """Read a model file and return its metadata and network."""
    meta, tensors = read_model(path)
    return meta, network_from_meta(meta, tensors, str(path))


class TorchEngine:
    """Computes logits with PyTorch (channels_last; bf16 only where the CPU has native bf16).

    ``net`` is the network as trained (Grad-CAM hooks into it); logits come from its
    :func:`~pneumoscan.models.inference_network`, which computes the same function faster.
    """

    name = "torch"

    def __init__(self, meta: ModelMeta, net: nn.Module, precision: str = "auto") -> None:
        self.meta = meta
        self.net = net.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.inference_net = inference_network(self.net)
        self.bf16 = use_bf16(precision)

    @classmethod
    def load(cls, path: str | os.PathLike[str], precision: str = "auto") -> TorchEngine:
        """Load a ``.safetensors`` model file."""
        meta, net = load_network(path)
        return cls(meta, net, precision)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 ``(N, C, S, S)`` batch from :func:`pneumoscan.preprocess.to_model_input`."""
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.inference_net(x).float().numpy()
