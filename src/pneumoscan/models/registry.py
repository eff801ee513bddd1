"""Registry of architectures: ``build_model(ModelConfig, PreprocessConfig)`` builds one by name.

An architecture is a :class:`~pneumoscan.models.common.XrayNetwork` subclass whose constructor
takes ``in_channels``, ``image_size`` and ``normalization`` plus its own keyword options, splits
its forward pass into ``forward_features`` and ``forward_head`` (one logit per image) and exposes
``cam_layers``: the modules whose outputs are its convolutional stages, first to last, used for the
heat maps of :mod:`pneumoscan.explain`.  With ``ModelConfig.gate`` the built network also carries
the "chest film?" gate head.  It may provide ``inference_copy()``: a network computing the same
eval-mode function faster (see :func:`inference_network`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pneumoscan.config import ModelConfig, PreprocessConfig
from pneumoscan.errors import PneumoscanError
from pneumoscan.hardware import reuse_freed_memory
from pneumoscan.models.common import XrayNetwork

_REGISTRY: dict[str, type[XrayNetwork]] = {}
# Largest network built (400 MB of fp32 weights); the bundled model has 1.2M parameters, seed-cnn 2.1M
MAX_PARAMETERS = 100_000_000
M = TypeVar("M", bound=type[XrayNetwork])


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


def check_model(model: ModelConfig, preprocess: PreprocessConfig) -> int:
    """The parameter count of the network ``model`` describes, built without memory (torch's ``meta``
    device); refuses unknown architectures, options they reject and networks over :data:`MAX_PARAMETERS`.
    """
    import torch

    with torch.device("meta"):
        net = _construct(model, preprocess)
    count = sum(p.numel() for p in net.parameters())
    if count > MAX_PARAMETERS:
        raise PneumoscanError(
            f"architecture {model.architecture!r} with options {model.options} has {count:,} parameters, "
            f"over the limit of {MAX_PARAMETERS:,} ({count * 4 / 2**30:.1f} GiB of weights); "
            "use smaller options"
        )
    return count


def build_model(model: ModelConfig, preprocess: PreprocessConfig) -> XrayNetwork:
    """Instantiate the architecture named in ``model`` for inputs described by ``preprocess``.

    The network is checked first (:func:`check_model`), so bad or huge options fail before any
    memory is allocated. Building a network is where large tensors begin, so this also sets the
    allocator up for them (:func:`pneumoscan.hardware.reuse_freed_memory`).
    """
    check_model(model, preprocess)
    reuse_freed_memory()
    return _construct(model, preprocess)


def _construct(model: ModelConfig, preprocess: PreprocessConfig) -> XrayNetwork:
    _load_builtins()
    try:
        cls: Callable[..., XrayNetwork] = _REGISTRY[model.architecture]
    except KeyError:
        raise PneumoscanError(
            f"unknown architecture {model.architecture!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        ) from None
    try:
        net = cls(
            in_channels=preprocess.channels,
            image_size=preprocess.image_size,
            normalization=preprocess.normalization,
            **model.options,
        )
    except (TypeError, ValueError, IndexError, OverflowError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PneumoscanError(
            f"architecture {model.architecture!r}: bad options {model.options} ({reason})"
        ) from exc
    if model.gate:
        net.attach_gate()
    return net


def inference_network(net: XrayNetwork) -> XrayNetwork:
    """``net`` in eval mode, or its ``inference_copy()`` where the architecture has one (inference only:
    no training, no Grad-CAM)."""
    copy = getattr(net.eval(), "inference_copy", None)
    return copy() if callable(copy) else net


def _load_builtins() -> None:
    from pneumoscan.models import pneumo_resnet, seed_cnn  # noqa: F401  (registers on import)
