"""Export a pneumoscan model file to other formats (ONNX); exporting needs the ``export`` extra."""

from pneumoscan.export.onnx_export import export_onnx

__all__ = ["export_onnx"]
