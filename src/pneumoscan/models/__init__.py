"""Network architectures, looked up by name in :mod:`pneumoscan.models.registry`."""

from pneumoscan.models.registry import available_architectures, build_model, register

__all__ = ["available_architectures", "build_model", "register"]
