"""The ``pneumoscan`` command line: inspect, train, evaluate, calibrate, predict, pacs, export,
import-keras, serve, info, demo -- one module per command, each with ``add(subparsers)`` and ``run(args)``.

Every user error ends in one line on stderr (``pneumoscan: error: ...``) and exit status 2;
``--debug`` shows the traceback instead.  Heavy libraries are imported inside each command so
that ``pneumoscan --help`` and the torch-free ONNX paths stay fast and light.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TextIO

from pneumoscan import __version__
from pneumoscan.cli import (
    calibrate,
    demo,
    evaluate,
    export,
    import_keras,
    info,
    inspect,
    pacs,
    predict,
    serve,
    train,
)
from pneumoscan.cli.common import PREDICT_HEADER, quiet_libraries
from pneumoscan.cli.evaluate import report_path
from pneumoscan.cli.predict import collect_images
from pneumoscan.errors import PneumoscanWarning, user_error

__all__ = ["COMMANDS", "PREDICT_HEADER", "build_parser", "collect_images", "main", "report_path"]

COMMANDS: dict[str, ModuleType] = {
    "inspect": inspect,
    "train": train,
    "evaluate": evaluate,
    "calibrate": calibrate,
    "predict": predict,
    "pacs": pacs,
    "info": info,
    "export": export,
    "import-keras": import_keras,
    "serve": serve,
    "demo": demo,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="pneumoscan", description="Pneumonia detection on chest X-rays.")
    parser.add_argument("--version", action="version", version=f"pneumoscan {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add(sub)
    return parser


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
        quiet_libraries()
    try:
        return COMMANDS[args.command].run(args)
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
        error = user_error(exc)  # the one rule for which errors are the user's to fix
        if error is not None:
            print(f"pneumoscan: error: {error}", file=sys.stderr)
            return 2
        print(
            f"pneumoscan: error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr
        )
        return 1
