"""``pneumoscan demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumoscan.cli.common import quiet_libraries


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in synthetic data",
        description="Make a small synthetic data set, train, evaluate and predict, offline, in a minute.",
    )
    p.add_argument("--out", default="pneumoscan-demo", help="folder for the data and the run")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def run(args: argparse.Namespace) -> int:
    from pneumoscan.demo import run_demo

    if not args.debug:
        quiet_libraries()  # again, as for train: importing Lightning resets its loggers to INFO
    run_demo(Path(args.out), progress=not args.quiet)
    return 0
