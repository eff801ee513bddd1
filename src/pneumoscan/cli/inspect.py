"""``pneumoscan inspect``."""

from __future__ import annotations

import argparse

from pneumoscan.cli.common import add_data_option, data_sources


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list and check data folders", description="Inspect data folders.")
    p.add_argument(
        "sources", nargs="*", metavar="DATA", help="data folder or labels CSV (several: one site each)"
    )
    add_data_option(p, "(the same as DATA)")
    p.add_argument("--recipe", default="seed", help="recipe whose preprocessing and split settings to use")
    p.add_argument("--plots", help="write class-distribution and sample-image PNGs into this folder")
    p.add_argument("--manifest", help="write the manifest (one row per image) to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pneumoscan.config import recipe
    from pneumoscan.data.inspect import inspect_dataset

    report = inspect_dataset(data_sources(args), recipe(args.recipe), progress=not args.quiet)
    print(report.text())
    if args.manifest:
        from pneumoscan.atomic import atomic_write_text

        atomic_write_text(args.manifest, report.manifest.to_csv(index=False))
    if args.plots:
        report.write_plots(args.plots)
    return 0
