"""``pneumoscan export``."""

from __future__ import annotations

import argparse

from pneumoscan.errors import PneumoscanError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model file to ONNX",
        description="Export a model to ONNX for torch-free serving with onnxruntime (--engine onnx).",
    )
    p.add_argument(
        "model", help="model file (.safetensors), or 'bundled' for the model shipped with pneumoscan"
    )
    p.add_argument("out", help="ONNX file to write (.onnx)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default: onnx)")
    p.add_argument("--opset", type=int, help="ONNX opset to target (default: the exporter's recommended one)")
    p.add_argument(
        "--int8",
        metavar="FOLDER",
        help="quantize to int8 (faster on CPUs), calibrating on films under FOLDER, e.g. the training data",
    )
    p.add_argument(
        "--calibration-images", type=int, default=256, help="films used for --int8 calibration (default: 256)"
    )


def run(args: argparse.Namespace) -> int:
    from pneumoscan.export import export_onnx
    from pneumoscan.model_source import resolve_model

    source = resolve_model(args.model)
    if source.engine != "torch":
        raise PneumoscanError(f"{source.path}: already an ONNX file; export takes a .safetensors model file")
    out = export_onnx(
        source.path,
        args.out,
        args.opset,
        int8_calibration=args.int8,
        calibration_images=args.calibration_images,
    )
    print(f"wrote {out}")
    return 0
