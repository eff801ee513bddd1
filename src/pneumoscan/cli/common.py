"""What several commands share: the --data option, one-line reporting of skipped files and warnings,
JSON/CSV tables, and keeping the libraries' own chatter off the terminal."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from typing import TYPE_CHECKING

from pneumoscan.errors import PneumoscanError, PneumoscanWarning

if TYPE_CHECKING:
    from pneumoscan.model_file import ModelMeta

ENGINE_HELP = "torch or onnx (default: the one the model file is made for)"
# predict's plain output: calibrated probability of pneumonia, the label at the model's threshold, the file
PREDICT_HEADER = f"{'probability':>11}  {'label':<9}  file"


def positive_number(text: str) -> float:
    """argparse type: a finite number above 0 (a usage error, exit 2, for 0, negatives, nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number above 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number above 0")
    return value


def add_bf16_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bf16",
        action="store_true",
        help="torch engine: compute in bf16 (faster where the CPU has native bf16, probabilities within "
        "about 0.01; default fp32, the same on every machine and as the ONNX engine)",
    )


def add_data_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--data",
        action="append",
        metavar="FOLDER_OR_CSV",
        help="data folder (Kaggle layout or NORMAL/ PNEUMONIA/) or labels CSV (path,label[,patient,site,"
        f"split,view,age,sex]); repeat it for several sites {default}",
    )


def data_sources(args: argparse.Namespace) -> list[str]:
    """The data sources of inspect/evaluate: the positional DATA arguments, then every --data."""
    sources = [*args.sources, *(args.data or [])]
    if not sources:
        raise PneumoscanError("no data: pass a data folder or labels CSV (DATA or --data)")
    return sources


def check_heatmaps(model: str | None, args: argparse.Namespace) -> None:
    from pneumoscan.model_source import resolve_model

    if args.heatmaps and resolve_model(model, args.engine).engine == "onnx":
        raise PneumoscanError("--heatmaps needs the torch engine (a .safetensors model, not --engine onnx)")


def warn_if_synthetic(meta: ModelMeta) -> None:
    """A model trained on synthetic shapes says so on every use."""
    if meta.synthetic_warning():
        print(f"pneumoscan: warning: {meta.synthetic_warning()}", file=sys.stderr)


def report_skipped(skipped: dict[str, str]) -> None:
    for message in skipped.values():
        print(f"pneumoscan: skipped {message}", file=sys.stderr)
    if skipped:
        print(f"pneumoscan: {len(skipped)} unreadable files skipped", file=sys.stderr)


def write_table(rows: list[dict], args: argparse.Namespace) -> bool:
    """Print ``rows`` as JSON lines (``--json``) or write them as CSV (``--csv``); False if neither."""
    import pandas as pd

    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif args.csv:
        table = pd.DataFrame(rows)
        if args.csv == "-":
            print(table.to_csv(index=False), end="")
        else:
            from pneumoscan.atomic import atomic_write_text

            atomic_write_text(args.csv, table.to_csv(index=False))
            print(f"wrote {len(rows)} rows to {args.csv}")
    return bool(args.json or args.csv)


def quiet_libraries() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("always", category=PneumoscanWarning)  # ours are for the user: never hidden
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
