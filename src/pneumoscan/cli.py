"""The ``pneumoscan`` command line: inspect, train, evaluate, predict, export, import-keras, serve, demo.

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

from pneumoscan import __version__
from pneumoscan.errors import PneumoscanError

MODEL_SUFFIXES = (".safetensors", ".onnx")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a data folder", description="Train a model.")
    p.add_argument("--data", required=True, help="data folder (Kaggle layout or NORMAL/ PNEUMONIA/)")
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
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train_config(args: argparse.Namespace):
    from pneumoscan.config import Config, recipe

    if args.config and args.recipe:
        raise PneumoscanError("give --recipe or --config, not both")
    if args.config:
        config = Config.load(args.config)
    elif args.init_from and not args.recipe:
        from pneumoscan.model_file import read_meta

        config = read_meta(args.init_from).config or recipe("seed")
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
        args.data, args.out, config, resume=args.resume, init_from=args.init_from, progress=not args.quiet
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
    p = sub.add_parser("inspect", help="list and check a data folder", description="Inspect a data folder.")
    p.add_argument("data", help="data folder")
    p.add_argument("--recipe", default="seed", help="recipe whose preprocessing and split settings to use")
    p.add_argument("--plots", help="write class-distribution and sample-image PNGs into this folder")
    p.add_argument("--manifest", help="write the manifest (one row per image) to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_inspect(args: argparse.Namespace) -> int:
    from pneumoscan.config import recipe
    from pneumoscan.data.inspect import inspect_dataset

    report = inspect_dataset(args.data, recipe(args.recipe), progress=not args.quiet)
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
    p.add_argument("data", help="data folder (Kaggle layout or NORMAL/ PNEUMONIA/)")
    p.add_argument("--split", help="split to evaluate (default: test, or the only one)")
    p.add_argument("--out", help="folder for metrics.json, predictions.csv and plots (default: none)")
    p.add_argument("--report", help="write a self-contained HTML report to this file")
    p.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.evaluation.metrics import format_report
    from pneumoscan.predict import Predictor

    predictor = Predictor.load(_model_path(args.model), args.engine)
    result = evaluate(predictor, args.data, args.split, progress=not args.quiet)
    print(format_report(result.metrics))
    _report_skipped(result.skipped)
    if args.out:
        written = result.write(args.out)
        print(f"wrote {len(written)} files to {args.out}")
    if args.report:
        from pneumoscan.evaluation.report import write_report

        write_report(result, predictor, args.report)
        print(f"report: {args.report}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="pneumonia probability for images",
        description="Predict images. The first argument may be a model file (.safetensors/.onnx); "
        "without one the bundled model is used.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="[MODEL] IMAGE_OR_DIR", help="model file, then images or folders"
    )
    p.add_argument("--model", help="model file (alternative to giving it first)")
    p.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write a CSV table ('-' for stdout)")
    out.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--explain", metavar="OUT_DIR", help="write a heat-map overlay PNG per image into OUT_DIR")


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
    from pneumoscan.predict import Predictor

    inputs = list(args.inputs)
    model = args.model
    if model is None and inputs[0].lower().endswith(MODEL_SUFFIXES):
        model = inputs.pop(0)
    paths = collect_images(inputs)
    if not paths:
        raise PneumoscanError("no images to predict; pass image files or folders")
    predictor = Predictor.load(model, args.engine)
    if args.explain:
        from pneumoscan.explain import explain_files

        results = explain_files(predictor, paths, args.explain)
        written = sum(1 for r in results if r.heatmap_path)
        print(f"heat maps: {written} PNG files in {args.explain}", file=sys.stderr)
    else:
        results = predictor.predict_files(paths)
    _print_predictions([r.as_dict() for r in results], args)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"pneumoscan: skipped {r.error}", file=sys.stderr)
    if failed:
        print(f"pneumoscan: {len(failed)} of {len(results)} files skipped", file=sys.stderr)
    return 0 if len(failed) < len(results) else 2


def _print_predictions(rows: list[dict], args: argparse.Namespace) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif args.csv:
        if args.csv == "-":
            print(table.to_csv(index=False), end="")
        else:
            from pneumoscan.atomic import atomic_write_text

            atomic_write_text(args.csv, table.to_csv(index=False))
            print(f"wrote {len(rows)} rows to {args.csv}")
    else:
        ok = table[table["error"] == ""]
        for row in ok.itertuples():
            note = f"  ! {row.warnings}" if row.warnings else ""
            print(f"{row.probability:8.4f}  {row.label:<9}  {row.path}{note}")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model file's metadata", description="Show model metadata.")
    p.add_argument("model", nargs="?", help="model file, or 'bundled' (the default)")


def _model_path(value: str | None) -> str | None:
    """A model argument; ``None`` (for the bundled model) when it is missing or ``bundled``."""
    return None if value in (None, "bundled") else value


def cmd_info(args: argparse.Namespace) -> int:
    from pneumoscan.predict import load_engine

    model = _model_path(args.model)
    engine = "onnx" if model and model.lower().endswith(".onnx") else "torch"
    if engine == "torch":
        from pneumoscan.model_file import read_meta
        from pneumoscan.predict import bundled_model_path

        meta = read_meta(model or bundled_model_path())
    else:
        meta = load_engine(model, "onnx").meta
    print(meta.model_dump_json(indent=2))
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
    from pneumoscan.predict import bundled_model_path

    model = _model_path(args.model) or bundled_model_path()
    out = export_onnx(
        model, args.out, args.opset, int8_calibration=args.int8, calibration_images=args.calibration_images
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
    from pneumoscan.serve import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES

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
        default="torch",
        help="torch (heat maps available) or onnx (a .onnx file from pneumoscan export)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest request body in MiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="largest image accepted, in millions of pixels (default: %(default)g)",
    )
    p.add_argument(
        "--save-uploads", metavar="DIR", help="keep a copy of every upload in DIR (default: never written)"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pneumoscan.predict import Predictor
    from pneumoscan.serve.app import create_app

    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise PneumoscanError("--max-upload-mb and --max-megapixels must be positive")
    if args.save_uploads:
        try:
            Path(args.save_uploads).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PneumoscanError(f"{args.save_uploads}: cannot create the uploads folder ({exc})") from None
    predictor = Predictor.load(args.model, args.engine)
    app = create_app(
        predictor,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        save_uploads_dir=args.save_uploads,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"pneumoscan: warning: listening on {args.host}: other machines can reach this server, "
            "which has no authentication",
            file=sys.stderr,
        )
    print(
        f"pneumoscan: serving {predictor.meta.model_id()} ({args.engine}) on http://{args.host}:{args.port}/ "
        "(API docs at /docs; Ctrl+C stops)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in synthetic data",
        description="Make a small synthetic data set, train, evaluate and predict, offline, in a minute.",
    )
    p.add_argument("--out", default="pneumoscan-demo", help="folder for the data and the run")


def cmd_demo(args: argparse.Namespace) -> int:
    from pneumoscan.demo import run_demo

    run_demo(Path(args.out))
    return 0


def _report_skipped(skipped: dict[str, str]) -> None:
    for message in skipped.values():
        print(f"pneumoscan: skipped {message}", file=sys.stderr)
    if skipped:
        print(f"pneumoscan: {len(skipped)} unreadable files skipped", file=sys.stderr)


COMMANDS = {
    "inspect": (_add_inspect, cmd_inspect),
    "train": (_add_train, cmd_train),
    "evaluate": (_add_evaluate, cmd_evaluate),
    "predict": (_add_predict, cmd_predict),
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
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pneumoscan`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
