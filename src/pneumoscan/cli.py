"""The ``pneumoscan`` command line: inspect, train, evaluate, calibrate, predict, pacs, export,
import-keras, serve, demo.

Every user error ends in one line on stderr (``pneumoscan: error: ...``) and exit status 2;
``--debug`` shows the traceback instead.  Heavy libraries are imported inside each command so
that ``pneumoscan --help`` and the torch-free ONNX paths stay fast and light.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pneumoscan import __version__
from pneumoscan.errors import PneumoscanError, PneumoscanWarning

if TYPE_CHECKING:
    from pneumoscan.model_file import ModelMeta

ENGINE_HELP = "torch or onnx (default: the one the model file is made for)"
# predict's plain output: calibrated probability of pneumonia, the label at the model's threshold, the file
PREDICT_HEADER = f"{'probability':>11}  {'label':<9}  file"


def _add_data_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--data",
        action="append",
        metavar="FOLDER_OR_CSV",
        help="data folder (Kaggle layout or NORMAL/ PNEUMONIA/) or labels CSV (path,label[,patient,site,"
        f"split,view,age,sex]); repeat it for several sites {default}",
    )


def _data_sources(args: argparse.Namespace) -> list[str]:
    """The data sources of inspect/evaluate: the positional DATA arguments, then every --data."""
    sources = [*args.sources, *(args.data or [])]
    if not sources:
        raise PneumoscanError("no data: pass a data folder or labels CSV (DATA or --data)")
    return sources


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on data folders", description="Train a model.")
    _add_data_option(p, "(default: data.sources of --config)")
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument(
        "--recipe", default=None, help="named recipe: seed (the notebook) or default (bundled model)"
    )
    p.add_argument("--config", default=None, help="JSON config to start from (e.g. a run's config.json)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-3"
    )
    p.add_argument("--epochs", type=int, help="train.max_epochs")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="train.lr")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--image-size", type=int, help="preprocess.image_size")
    p.add_argument("--no-augment", action="store_true", help="augment.enabled=false")
    p.add_argument("--no-bf16", action="store_true", help="train.precision=32 (never use bf16 autocast)")
    p.add_argument("--no-channels-last", action="store_true", help="train.channels_last=false")
    p.add_argument("--accelerator", help="cpu, gpu, auto (Lightning)")
    p.add_argument("--devices", help="number of devices or 'auto' (Lightning)")
    p.add_argument("--num-nodes", type=int, help="number of nodes for multi-node DDP")
    p.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (Lightning)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", help="start from the weights of this pneumoscan model file (fine-tuning)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars or per-epoch lines, only the result"
    )
    p.add_argument("--model-summary", action="store_true", help="print the network's table of layers first")


def _train_config(args: argparse.Namespace):
    from pneumoscan.config import Config, recipe

    if args.config and args.recipe:
        raise PneumoscanError("give --recipe or --config, not both")
    if args.config:
        config = Config.load(args.config)
    elif args.init_from and not args.recipe:
        from pneumoscan.model_file import read_meta
        from pneumoscan.model_source import resolve_model

        config = read_meta(resolve_model(args.init_from, "torch").path).config or recipe("seed")
    else:
        config = recipe(args.recipe or "seed")
    flags = {
        "train.max_epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.seed": args.seed,
        "preprocess.image_size": args.image_size,
        "augment.enabled": False if args.no_augment else None,
        "train.precision": "32" if args.no_bf16 else None,
        "train.channels_last": False if args.no_channels_last else None,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
    }
    overrides = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    return config.with_overrides(overrides + args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from pneumoscan.training.fit import train

    if not args.debug:
        _quiet_libraries()  # again: importing Lightning resets its loggers to INFO

    config = None if args.resume else _train_config(args)
    result = train(
        args.data,
        args.out,
        config,
        resume=args.resume,
        init_from=args.init_from,
        progress=not args.quiet,
        model_summary=args.model_summary,
    )
    if result.model_path is None:  # a non-zero rank of a distributed run
        return 0
    val = result.metrics["validation"]
    print(f"model: {result.model_path}")
    print(
        f"validation: accuracy {val['accuracy']:.4f}  ROC-AUC {val['roc_auc']:.4f}  "
        f"threshold {val['threshold']:.3f}  "
        f"({result.metrics['train_seconds']:.0f} s, {result.metrics['epochs']} epochs)"
    )
    _report_skipped(result.metrics["skipped_files"])
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list and check data folders", description="Inspect data folders.")
    p.add_argument(
        "sources", nargs="*", metavar="DATA", help="data folder or labels CSV (several: one site each)"
    )
    _add_data_option(p, "(the same as DATA)")
    p.add_argument("--recipe", default="seed", help="recipe whose preprocessing and split settings to use")
    p.add_argument("--plots", help="write class-distribution and sample-image PNGs into this folder")
    p.add_argument("--manifest", help="write the manifest (one row per image) to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_inspect(args: argparse.Namespace) -> int:
    from pneumoscan.config import recipe
    from pneumoscan.data.inspect import inspect_dataset

    report = inspect_dataset(_data_sources(args), recipe(args.recipe), progress=not args.quiet)
    print(report.text())
    if args.manifest:
        from pneumoscan.atomic import atomic_write_text

        atomic_write_text(args.manifest, report.manifest.to_csv(index=False))
    if args.plots:
        report.write_plots(args.plots)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="measure a model on a labelled split", description="Evaluate a model."
    )
    p.add_argument("model", help="model file, or 'bundled' for the model shipped with pneumoscan")
    p.add_argument(
        "sources", nargs="*", metavar="DATA", help="data folder or labels CSV (several: one site each)"
    )
    _add_data_option(p, "(the same as DATA)")
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
    p.add_argument("--engine", choices=["torch", "onnx"], help=ENGINE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.evaluation.groups import format_groups
    from pneumoscan.evaluation.metrics import format_report
    from pneumoscan.predict import Predictor

    predictor = Predictor.load(args.model, args.engine)
    result = evaluate(predictor, _data_sources(args), args.split, progress=not args.quiet)
    print(format_report(result.metrics))
    print(f"\nper group, with 95% {result.metrics['bootstrap']['unit']}-bootstrap intervals")
    print(format_groups(result.metrics["groups"]))
    _warn_if_synthetic(predictor.meta)
    _report_skipped(result.skipped)
    if args.out:
        written = result.write(args.out)
        print(f"wrote {len(written)} files to {args.out}")
    if args.report:
        from pneumoscan.evaluation.report import write_report

        print(f"report: {write_report(result, predictor, report_path(args.report, args.out))}")
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="refit a model's temperature and threshold on a new site's labelled films",
        description="Refit the calibration temperature and the operating threshold on labelled films "
        "of a new site, without retraining, and write a new model file that records them. "
        "A .onnx model is recalibrated without PyTorch.",
    )
    p.add_argument("model", help="model file (.safetensors or .onnx), or 'bundled'")
    p.add_argument("data", help="labelled films (Kaggle layout or NORMAL/ PNEUMONIA/)")
    p.add_argument("--out", required=True, help="new model file to write (same suffix as MODEL)")
    p.add_argument(
        "--rule",
        choices=["fixed", "sensitivity", "youden"],
        help="threshold rule (default: the model's own): fixed (--threshold), sensitivity "
        "(highest threshold keeping --target-sensitivity), youden (max sensitivity + specificity)",
    )
    p.add_argument(
        "--target-sensitivity", type=float, help="sensitivity to keep (implies --rule sensitivity)"
    )
    p.add_argument("--threshold", type=float, help="threshold of --rule fixed (default 0.5)")
    p.add_argument("--keep-temperature", action="store_true", help="refit the threshold only")
    p.add_argument("--split", help="split to calibrate on (default: the only one, else val, else train)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _calibration_rule(args: argparse.Namespace):
    from pydantic import ValidationError

    from pneumoscan.config import CalibrationConfig

    rule = args.rule or ("sensitivity" if args.target_sensitivity is not None else None)
    if args.target_sensitivity is not None and rule != "sensitivity":
        raise PneumoscanError("--target-sensitivity goes with --rule sensitivity")
    if args.threshold is not None and rule != "fixed":
        raise PneumoscanError("--threshold goes with --rule fixed")
    if rule is None:
        return None
    fields = {
        "threshold_rule": rule,
        "threshold": args.threshold,
        "target_sensitivity": args.target_sensitivity,
    }
    try:
        return CalibrationConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise PneumoscanError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pneumoscan.recalibrate import recalibrate

    result = recalibrate(
        args.model,
        args.data,
        args.out,
        _calibration_rule(args),
        args.split,
        args.keep_temperature,
        progress=not args.quiet,
    )
    record = result.record
    print(f"calibrated on {sum(record.films.values())} films: {record.summary()}")
    before, after = record.metrics_before, record.metrics_after
    changes = "  ".join(
        f"{name} {_fmt(before[name])} -> {_fmt(after[name])}"
        for name in ("sensitivity", "specificity", "ece")
    )
    print(f"on these same films: {changes} (measure on other films with pneumoscan evaluate)")
    print(f"wrote {result.path}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_path(report: str, out: str | None) -> Path:
    """Where ``evaluate --report`` writes: a bare file name goes into ``--out`` when one is given."""
    return Path(out) / report if out and not os.path.dirname(report) else Path(report)


def _add_predict(sub: argparse._SubParsersAction) -> None:
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


def cmd_predict(args: argparse.Namespace) -> int:
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
    _check_heatmaps(model, args)
    predictor = Predictor.load(model, args.engine, refuse=not args.no_refuse)
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
        _warn_if_synthetic(predictor.meta)
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


def _write_table(rows: list[dict], args: argparse.Namespace) -> bool:
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


def _print_predictions(rows: list[dict], args: argparse.Namespace) -> None:
    import pandas as pd

    if not _write_table(rows, args):
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


def _add_pacs(sub: argparse._SubParsersAction) -> None:
    from pneumoscan.data.imageio import CHEST_MODALITIES

    p = sub.add_parser(
        "pacs",
        help="predict studies of a PACS (DICOMweb) and store the results back",
        description="Retrieve chest films from a DICOMweb archive, predict them and store into the same "
        "study a DICOM SR with the result (and with --heatmaps a Secondary Capture of the heat map). "
        "Running it again stores nothing twice.",
    )
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. http://localhost:8042/dicom-web")
    p.add_argument("--user", help="login for the archive (HTTP basic authentication)")
    p.add_argument(
        "--password", help="password for --user (default: the PNEUMOSCAN_PACS_PASSWORD environment variable)"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", action="append", metavar="UID", help="a Study Instance UID (repeatable)")
    which.add_argument(
        "--since", metavar="TIME", help="all studies from this date/time on, e.g. 2024-05-01T08:00"
    )
    p.add_argument(
        "--modality",
        default=",".join(CHEST_MODALITIES),
        help="with --since: modalities in the study (default: %(default)s)",
    )
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--engine", choices=["torch", "onnx"], help=ENGINE_HELP)
    p.add_argument("--heatmaps", action="store_true", help="also store a Secondary Capture of the heat map")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write a CSV table ('-' for stdout)")
    out.add_argument("--json", action="store_true", help="print JSON lines")


def _check_heatmaps(model: str | None, args: argparse.Namespace) -> None:
    from pneumoscan.model_source import resolve_model

    if args.heatmaps and resolve_model(model, args.engine).engine == "onnx":
        raise PneumoscanError("--heatmaps needs the torch engine (a .safetensors model, not --engine onnx)")


def _since(value: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise PneumoscanError(f"--since {value}: not a date/time; give e.g. 2024-05-01T08:00") from None


def cmd_pacs(args: argparse.Namespace) -> int:
    from pneumoscan.pacs.archive import Archive
    from pneumoscan.pacs.run import process_study
    from pneumoscan.predict import Predictor

    _check_heatmaps(args.model, args)
    password = args.password if args.password is not None else os.environ.get("PNEUMOSCAN_PACS_PASSWORD")
    archive = Archive(args.url, args.user, password)
    if args.since:
        modalities = [m.strip().upper() for m in args.modality.split(",") if m.strip()]
        studies = archive.find_studies(_since(args.since), modalities)
        print(f"pneumoscan: {len(studies)} studies since {args.since}", file=sys.stderr)
    else:
        studies = args.study
    predictor = Predictor.load(args.model, args.engine)
    results = []
    for study in studies:
        for result in process_study(archive, predictor, study, heatmaps=args.heatmaps):
            results.append(result)
            if not (args.csv or args.json):
                print(_instance_line(result), flush=True)
            if result.error:
                print(f"pneumoscan: skipped {result.error}", file=sys.stderr)
    _write_table([r.as_dict() for r in results], args)
    failed = sum(1 for r in results if r.error)
    stored = sum(1 for r in results if r.status.startswith("stored"))
    print(
        f"pneumoscan: {len(results)} instances: {stored} stored, "
        f"{len(results) - stored - failed} already stored, {failed} skipped",
        file=sys.stderr,
    )
    return 2 if results and failed == len(results) else 0


def _instance_line(result) -> str:
    """One stdout line per archive instance: probability, label, study/instance UIDs and what was done."""
    prediction = result.prediction
    where = f"{result.study_uid}/{result.sop_uid}"
    if prediction is None:
        status = f"skipped ({result.modality or 'no modality'})" if result.error else result.status
        return f"{'-':>8}  {'-':<9}  {where}  {status}"
    probability = f"{prediction.probability:8.4f}" if prediction.probability is not None else f"{'-':>8}"
    label = "REFUSED" if prediction.refused else prediction.label or "-"
    return f"{probability}  {label:<9}  {where}  {result.status}"


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model file's metadata", description="Show model metadata.")
    p.add_argument("model", nargs="?", help="model file, or 'bundled' (the default)")


def cmd_info(args: argparse.Namespace) -> int:
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


def _add_export(sub: argparse._SubParsersAction) -> None:
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


def cmd_export(args: argparse.Namespace) -> int:
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


def _add_import_keras(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-keras",
        help="convert the notebook's Keras .h5/.keras file into a model file",
        description="Convert a Keras .h5 or .keras file of the notebook's CNN into a seed-cnn model file "
        "(reads it with h5py; TensorFlow is not needed).",
    )
    p.add_argument("keras_model", help="Keras model file (.h5 from model.save, or .keras)")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")


def cmd_import_keras(args: argparse.Namespace) -> int:
    from pneumoscan.keras_import import import_keras

    print(f"wrote {import_keras(args.keras_model, args.out)}")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from pneumoscan import serve

    p = sub.add_parser(
        "serve",
        help="web page and JSON API for predictions",
        description="Serve a web page at / and a JSON API at /v1 (API docs at /docs). "
        "A research and education tool, not a medical device.",
    )
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument(
        "--engine",
        choices=["torch", "onnx"],
        help="torch (heat maps available) or onnx (a .onnx file from pneumoscan export); "
        "default: the one the model file is made for",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=serve.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest request body in MiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=serve.DEFAULT_MAX_PIXELS / 1e6,
        help="largest image accepted, in millions of pixels (default: %(default)g)",
    )
    p.add_argument(
        "--max-request-megapixels",
        type=float,
        default=serve.DEFAULT_MAX_REQUEST_PIXELS / 1e6,
        help="most pixels the images of one request may decode to together, in millions "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=serve.DEFAULT_MAX_IN_FLIGHT,
        help="most upload requests worked on at once; more get 503 (default: %(default)d)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=serve.DEFAULT_BODY_TIMEOUT_S,
        help="seconds a client may take to send an upload (default: %(default)g)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients may use to reach the server (checked against the Host header; "
        "default: this machine's names when --host is a loopback address, any otherwise)",
    )
    p.add_argument(
        "--save-uploads", metavar="DIR", help="keep a copy of every upload in DIR (default: never written)"
    )
    p.add_argument(
        "--save-uploads-max-mb",
        type=float,
        default=serve.DEFAULT_SAVE_UPLOADS_MAX_BYTES / 2**20,
        help="stop keeping uploads once DIR holds this many MiB (default: %(default)g)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pneumoscan.predict import Predictor
    from pneumoscan.serve.app import create_app
    from pneumoscan.serve.listen import listening_socket
    from pneumoscan.serve.security import LOOPBACK_HOSTS

    limits = (args.max_upload_mb, args.max_megapixels, args.max_request_megapixels, args.max_in_flight)
    if min(*limits, args.body_timeout, args.save_uploads_max_mb) <= 0:
        raise PneumoscanError(
            "--max-upload-mb, --max-megapixels, --max-request-megapixels, --max-in-flight, "
            "--body-timeout and --save-uploads-max-mb must be positive"
        )
    if args.save_uploads:
        try:
            Path(args.save_uploads).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PneumoscanError(f"{args.save_uploads}: cannot create the uploads folder ({exc})") from exc
    sock = listening_socket(args.host, args.port)  # before anything is announced: a busy port is one line
    try:
        predictor = Predictor.load(args.model, args.engine)
        _warn_if_synthetic(predictor.meta)
        loopback = args.host in LOOPBACK_HOSTS
        allowed = [*args.allowed_host, *(LOOPBACK_HOSTS if loopback else ())] or None
        app = create_app(
            predictor,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=int(args.max_megapixels * 1e6),
            max_request_pixels=int(args.max_request_megapixels * 1e6),
            max_in_flight=args.max_in_flight,
            body_timeout=args.body_timeout,
            save_uploads_dir=args.save_uploads,
            save_uploads_max_bytes=int(args.save_uploads_max_mb * 2**20),
            allowed_hosts=allowed,
        )
        if not loopback:
            print(
                f"pneumoscan: warning: listening on {args.host}: other machines can reach this server, "
                "which has no authentication",
                file=sys.stderr,
            )
        port = sock.getsockname()[1]
        print(
            f"pneumoscan: serving {predictor.meta.model_id()} ({predictor.engine.name}) "
            f"on http://{args.host}:{port}/ (API docs at /docs; Ctrl+C stops)",
            file=sys.stderr,
        )
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in synthetic data",
        description="Make a small synthetic data set, train, evaluate and predict, offline, in a minute.",
    )
    p.add_argument("--out", default="pneumoscan-demo", help="folder for the data and the run")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def cmd_demo(args: argparse.Namespace) -> int:
    from pneumoscan.demo import run_demo

    if not args.debug:
        _quiet_libraries()  # again, as for train: importing Lightning resets its loggers to INFO
    run_demo(Path(args.out), progress=not args.quiet)
    return 0


def _warn_if_synthetic(meta: ModelMeta) -> None:
    """A model trained on synthetic shapes says so on every use."""
    if meta.synthetic_warning():
        print(f"pneumoscan: warning: {meta.synthetic_warning()}", file=sys.stderr)


def _report_skipped(skipped: dict[str, str]) -> None:
    for message in skipped.values():
        print(f"pneumoscan: skipped {message}", file=sys.stderr)
    if skipped:
        print(f"pneumoscan: {len(skipped)} unreadable files skipped", file=sys.stderr)


COMMANDS = {
    "inspect": (_add_inspect, cmd_inspect),
    "train": (_add_train, cmd_train),
    "evaluate": (_add_evaluate, cmd_evaluate),
    "calibrate": (_add_calibrate, cmd_calibrate),
    "predict": (_add_predict, cmd_predict),
    "pacs": (_add_pacs, cmd_pacs),
    "info": (_add_info, cmd_info),
    "export": (_add_export, cmd_export),
    "import-keras": (_add_import_keras, cmd_import_keras),
    "serve": (_add_serve, cmd_serve),
    "demo": (_add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="pneumoscan", description="Pneumonia detection on chest X-rays.")
    parser.add_argument("--version", action="version", version=f"pneumoscan {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("always", category=PneumoscanWarning)  # ours are for the user: never hidden
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _tolerate_any_file_name() -> None:
    """Let stdout print every file name, even one that is not valid UTF-8 (stderr already escapes them).

    Such names arrive as ``os.fsdecode`` makes them (lone surrogates); a UTF-8 stdout writes their
    original bytes back (as ``ls`` and the CSV files do), any other encoding shows them escaped.
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
        reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` printing a :class:`PneumoscanWarning` as one line on stderr."""
    if issubclass(category, PneumoscanWarning):
        print(f"pneumoscan: warning: {message}", file=sys.stderr)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_SHOW_WARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pneumoscan`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _tolerate_any_file_name()
    warnings.showwarning = _show_warning
    if not args.debug:
        _quiet_libraries()
    try:
        return COMMANDS[args.command][1](args)
    except PneumoscanError as exc:
        if args.debug:
            raise
        print(f"pneumoscan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "pneumoscan: interrupted (continue a training run with: "
            "pneumoscan train --data DATA --out RUN --resume)",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"pneumoscan: error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr
        )
        return 1
