"""Registry of architectures: ``build_model(ModelConfig, PreprocessConfig)`` builds one by name.

An architecture is an ``nn.Module`` subclass whose constructor takes ``in_channels``,
``image_size`` and ``normalization`` plus its own keyword options, that returns one logit per
image from ``forward`` and exposes ``cam_layer``: the module whose output is the last
convolutional stage, used for Grad-CAM heat maps. It may provide ``inference_copy()``: a network
computing the same eval-mode function faster (see :func:`inference_network`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from torch import nn

from pneumoscan.config import ModelConfig, PreprocessConfig
from pneumoscan.errors import PneumoscanError
from pneumoscan.hardware import reuse_freed_memory


class Architecture(Protocol):
    """What every registered network provides besides ``nn.Module``."""

    @property
    def cam_layer(self) -> nn.Module: ...


_REGISTRY: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type[nn.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator that adds an architecture to the registry under ``name``."""

    def add(cls: M) -> M:
        _REGISTRY[name] = cls
        return cls

    return add


def available_architectures() -> list[str]:
    """Names of the registered architectures."""
    _load_builtins()
    return sorted(_REGISTRY)


def build_model(model: ModelConfig, preprocess: PreprocessConfig) -> nn.Module:
    """Instantiate the architecture named in ``model`` for inputs described by ``preprocess``.

    Building a network is where large tensors begin, so this also sets the allocator up for them
    (:func:`pneumoscan.hardware.reuse_freed_memory`).
    """
    reuse_freed_memory()
    _load_builtins()
    try:
        cls = _REGISTRY[model.architecture]
    except KeyError:
        raise PneumoscanError(
            f"unknown architecture {model.architecture!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        ) from None
    try:
        return cls(
            in_channels=preprocess.channels,
            image_size=preprocess.image_size,
            normalization=preprocess.normalization,
            **model.options,
        )
    except TypeError as exc:
        raise PneumoscanError(
            f"architecture {model.architecture!r}: bad options {model.options} ({exc})"
        ) from None


def inference_network(net: nn.Module) -> nn.Module:
    """``net`` in eval mode, or its ``inference_copy()`` where the architecture has one (inference only:
    no training, no Grad-CAM)."""
    copy = getattr(net.eval(), "inference_copy", None)
    return copy() if callable(copy) else net


def _load_builtins() -> None:
    from pneumoscan.models import pneumo_resnet, seed_cnn  # noqa: F401  (registers on import)
