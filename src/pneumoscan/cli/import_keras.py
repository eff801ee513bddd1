"""``pneumoscan import-keras``."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-keras",
        help="convert the notebook's Keras .h5/.keras file into a model file",
        description="Convert a Keras .h5 or .keras file of the notebook's CNN into a seed-cnn model file "
        "(reads it with h5py; TensorFlow is not needed).",
    )
    p.add_argument("keras_model", help="Keras model file (.h5 from model.save, or .keras)")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from pneumoscan.keras_import import import_keras

    print(f"wrote {import_keras(args.keras_model, args.out)}")
    return 0
