"""``pneumoscan predict``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pneumoscan.cli.common import (
    ENGINE_HELP,
    PREDICT_HEADER,
    add_bf16_option,
    check_heatmaps,
    warn_if_synthetic,
    write_table,
)
from pneumoscan.errors import PneumoscanError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="pneumonia probability for images",
        description="Predict images. The first argument may be a model file (.safetensors/.onnx) or "
        "'bundled'; without one the bundled model is used.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="[MODEL] IMAGE_OR_DIR", help="model file, then images or folders"
    )
    p.add_argument("--model", help="model file (alternative to giving it first)")
    p.add_argument("--engine", choices=["torch", "onnx"], help=ENGINE_HELP)
    add_bf16_option(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write a CSV table ('-' for stdout)")
    out.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--explain", metavar="OUT_DIR", help="write a heat-map overlay PNG per image into OUT_DIR")
    p.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="write a DICOM SR with the result of each DICOM film into DIR (<SOPInstanceUID>.dcm)",
    )
    p.add_argument(
        "--heatmaps", action="store_true", help="with --dicom-out: also a Secondary Capture of the heat map"
    )
    p.add_argument(
        "--no-refuse",
        action="store_true",
        help="label images the model would refuse too (they stay marked out of distribution)",
    )


def collect_images(inputs: Sequence[str]) -> list[str]:
    """Expand folders into their image files (sorted); files are kept as given."""
    from pneumoscan.data.imageio import find_image_files

    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in find_image_files(path))
            if not found:
                print(f"pneumoscan: warning: {item}: no image files in this folder", file=sys.stderr)
            paths.extend(found)
        else:
            paths.append(item)
    return paths


def run(args: argparse.Namespace) -> int:
    from pneumoscan.model_source import names_model
    from pneumoscan.predict import NO_GATE, Predictor

    inputs = list(args.inputs)
    model = args.model
    if names_model(inputs[0]):
        if model is not None:
            raise PneumoscanError(f"two models given ({model} and {inputs[0]}); pass one")
        model = inputs.pop(0)
    paths = collect_images(inputs)
    if not paths:
        raise PneumoscanError("no images to predict; pass image files or folders")
    if args.heatmaps and not args.dicom_out:
        raise PneumoscanError("--heatmaps adds heat maps to --dicom-out; give --dicom-out DIR too")
    check_heatmaps(model, args)
    predictor = Predictor.load(model, args.engine, refuse=not args.no_refuse, bf16=args.bf16)
    if predictor.meta.gate is None:
        print(f"pneumoscan: note: {NO_GATE}", file=sys.stderr)
    if args.explain:
        from pneumoscan.explain import explain_files

        results = explain_files(predictor, paths, args.explain)
        written = sum(1 for r in results if r.heatmap_path)
        print(f"heat maps: {written} PNG files in {args.explain}", file=sys.stderr)
    else:
        results = predictor.predict_files(paths)
    _print_predictions([r.as_dict() for r in results], args)
    failed = [r for r in results if r.error]
    if len(failed) < len(results):
        warn_if_synthetic(predictor.meta)
    for r in failed:
        print(f"pneumoscan: skipped {r.error}", file=sys.stderr)
    if failed:
        print(f"pneumoscan: {len(failed)} of {len(results)} files skipped", file=sys.stderr)
    outside = sum(r.out_of_distribution for r in results)
    if outside:
        what = "refused" if predictor.refuse else "judged anyway (--no-refuse)"
        print(
            f"pneumoscan: {outside} of {len(results)} images are not chest films the model can judge: {what}",
            file=sys.stderr,
        )
    if args.dicom_out:
        _write_dicom_out(predictor, results, args)
    return 0 if len(failed) < len(results) else 2


def _write_dicom_out(predictor, results: list, args: argparse.Namespace) -> None:
    from pneumoscan.pacs.files import write_dicom_results

    files, not_dicom = write_dicom_results(predictor, results, args.dicom_out, heatmaps=args.heatmaps)
    for message in not_dicom:
        print(f"pneumoscan: warning: {message}", file=sys.stderr)
    print(f"DICOM results: {len(files)} files in {args.dicom_out}", file=sys.stderr)


def _print_predictions(rows: list[dict], args: argparse.Namespace) -> None:
    import pandas as pd

    if not write_table(rows, args):
        table = pd.DataFrame(rows)
        ok = table[table["error"] == ""]
        if len(ok):
            print(PREDICT_HEADER)
        for row in ok.itertuples():
            notes = [f"out of distribution: {row.refusal_reason}"] if row.out_of_distribution else []
            notes += [row.warnings] if row.warnings else []
            note = "".join(f"  ! {n}" for n in notes)
            probability = "          -" if pd.isna(row.probability) else f"{row.probability:11.4f}"
            label = "REFUSED" if row.refused else row.label
            print(f"{probability}  {label:<9}  {row.path}{note}")
