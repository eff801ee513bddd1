"""Network architectures, looked up by name in :mod:`pneumoscan.models.registry`."""

from pneumoscan.models.registry import (
    available_architectures,
    build_model,
    check_model,
    inference_network,
    register,
)

__all__ = ["available_architectures", "build_model", "check_model", "inference_network", "register"]
