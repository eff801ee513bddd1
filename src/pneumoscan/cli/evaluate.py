"""``pneumoscan evaluate``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pneumoscan.cli.common import (
    ENGINE_HELP,
    add_bf16_option,
    add_data_option,
    data_sources,
    report_skipped,
    warn_if_synthetic,
)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="measure a model on a labelled split", description="Evaluate a model."
    )
    p.add_argument("model", help="model file, or 'bundled' for the model shipped with pneumoscan")
    p.add_argument(
        "sources", nargs="*", metavar="DATA", help="data folder or labels CSV (several: one site each)"
    )
    add_data_option(p, "(the same as DATA)")
    p.add_argument("--split", help="split to evaluate (default: test, or the only one)")
    p.add_argument("--out", help="folder for metrics.json, predictions.csv and plots (default: none)")
    p.add_argument(
        "--report",
        nargs="?",
        const="report.html",
        metavar="FILE",
        help="write a self-contained HTML report; a bare file name (or none: report.html) goes into --out "
        "when --out is given, a path with a folder is used as it is",
    )
    p.add_argument(
        "--boxes",
        metavar="CSV",
        help="readers' boxes (path,x,y,width,height in the film's pixels; paths relative to the CSV): "
        "measure whether the heat maps of the PNEUMONIA films point into them",
    )
    p.add_argument("--engine", choices=["torch", "onnx"], help=ENGINE_HELP)
    add_bf16_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.evaluation.groups import format_groups
    from pneumoscan.evaluation.intervals import format_operating_point
    from pneumoscan.evaluation.metrics import format_report
    from pneumoscan.evaluation.other import format_other
    from pneumoscan.predict import Predictor

    predictor = Predictor.load(args.model, args.engine, bf16=args.bf16)
    result = evaluate(predictor, data_sources(args), args.split, progress=not args.quiet, boxes=args.boxes)
    print(format_report(result.metrics))
    point = format_operating_point(result.metrics["operating_point"])
    print(f"at threshold {result.metrics['threshold']:.3f}: {point}")
    print(f"\nper group, with 95% {result.metrics['bootstrap']['unit']}-bootstrap intervals")
    print(format_groups(result.metrics["groups"]))
    if result.localisation is not None:
        from pneumoscan.evaluation.localisation import format_localisation

        print(f"\n{format_localisation(result.localisation.metrics)}")
    if result.metrics["other"]:
        print(f"\n{format_other(result.metrics['other'])}")
    warn_if_synthetic(predictor.meta)
    report_skipped(result.skipped)
    if args.out:
        written = result.write(args.out)
        print(f"wrote {len(written)} files to {args.out}")
    if args.report:
        from pneumoscan.evaluation.report import write_report

        print(f"report: {write_report(result, predictor, report_path(args.report, args.out))}")
    return 0


def report_path(report: str, out: str | None) -> Path:
    """Where ``evaluate --report`` writes: a bare file name goes into ``--out`` when one is given."""
    return Path(out) / report if out and not os.path.dirname(report) else Path(report)
