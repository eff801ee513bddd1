"""``pneumoscan info``."""

from __future__ import annotations

import argparse
import sys


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model file's metadata", description="Show model metadata.")
    p.add_argument("model", nargs="?", help="model file, or 'bundled' (the default)")


def run(args: argparse.Namespace) -> int:
    from pneumoscan.model_source import resolve_model
    from pneumoscan.predict import NO_GATE, load_engine

    source = resolve_model(args.model)
    if source.engine == "torch":
        from pneumoscan.model_file import read_meta

        meta = read_meta(source.path)
    else:
        meta = load_engine(source.path).meta
    print(meta.model_dump_json(indent=2))
    if meta.gate is None:  # on stderr, like the history: stdout stays one JSON document
        print(f"gate: none ({NO_GATE})", file=sys.stderr)
    else:
        print(f"gate: refuses when ood_score > {meta.gate.threshold:.4f} ({meta.gate.rule})", file=sys.stderr)
    if meta.calibration_history:
        print("calibration history:", file=sys.stderr)
        for number, record in enumerate(meta.calibration_history, 1):
            print(f"  {number}. {record.summary()}", file=sys.stderr)
    return 0
