"""``pneumoscan calibrate``."""

from __future__ import annotations

import argparse

from pneumoscan.errors import PneumoscanError


def add(sub: argparse._SubParsersAction) -> None:
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


def run(args: argparse.Namespace) -> int:
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
