"""``pneumoscan calibrate``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pneumoscan.errors import PneumoscanError

if TYPE_CHECKING:
    from pneumoscan.recalibrate import Recalibration


def add(sub: argparse._SubParsersAction) -> None:
    from typing import get_args

    from pneumoscan.config import ThresholdRule

    rules = [rule for rule in get_args(ThresholdRule) if rule != "worst-site"]  # worst-site needs sites
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
        choices=rules,
        help="threshold rule (default: the model's own; with a target: its bound rule): fixed "
        "(--threshold); sensitivity-bound, the highest threshold whose one-sided Clopper-Pearson lower "
        "bound of sensitivity at --confidence is at least --target-sensitivity (the target holds on new "
        "patients with that confidence); sensitivity-point, the highest threshold keeping the "
        "sensitivity of these films at the target (on new patients: about half the time); "
        "specificity-bound / specificity-point, the same for --target-specificity (lowest threshold); "
        "youden (max sensitivity + specificity)",
    )
    p.add_argument(
        "--target-sensitivity", type=float, help="sensitivity to keep (implies --rule sensitivity-bound)"
    )
    p.add_argument(
        "--target-specificity", type=float, help="specificity to keep (implies --rule specificity-bound)"
    )
    p.add_argument(
        "--confidence", type=float, help="confidence of the bound rules' lower bound (default 0.95)"
    )
    p.add_argument("--threshold", type=float, help="threshold of --rule fixed (default 0.5)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write the model even when the films cannot support the target or carry no signal",
    )
    p.add_argument("--keep-temperature", action="store_true", help="refit the threshold only")
    p.add_argument("--split", help="split to calibrate on (default: the only one, else val, else train)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _calibration_rule(args: argparse.Namespace):
    from pydantic import ValidationError

    from pneumoscan.config import CalibrationConfig

    targets = {"sensitivity": args.target_sensitivity, "specificity": args.target_specificity}
    given = [metric for metric, value in targets.items() if value is not None]
    if len(given) > 1:
        raise PneumoscanError("give one of --target-sensitivity and --target-specificity")
    rule = args.rule or (f"{given[0]}-bound" if given else None)
    for metric in targets:
        if targets[metric] is not None and not (rule or "").startswith(metric):
            raise PneumoscanError(f"--target-{metric} goes with --rule {metric}-bound or {metric}-point")
        if rule and rule.startswith(metric) and targets[metric] is None:
            raise PneumoscanError(f"--rule {rule} needs --target-{metric}")
    if args.confidence is not None and not (rule or "").endswith("-bound"):
        raise PneumoscanError(
            "--confidence goes with a bound rule (--target-sensitivity or --target-specificity)"
        )
    if args.threshold is not None and rule != "fixed":
        raise PneumoscanError("--threshold goes with --rule fixed")
    if rule is None:
        return None
    fields = {
        "threshold_rule": rule,
        "threshold": args.threshold,
        "target_sensitivity": args.target_sensitivity,
        "target_specificity": args.target_specificity,
        "confidence": args.confidence,
    }
    try:
        return CalibrationConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise PneumoscanError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def run(args: argparse.Namespace) -> int:
    from pneumoscan.recalibrate import CalibrationRefused, recalibrate

    try:
        result = recalibrate(
            args.model,
            args.data,
            args.out,
            _calibration_rule(args),
            args.split,
            args.keep_temperature,
            progress=not args.quiet,
            force=args.force,
        )
    except CalibrationRefused as exc:
        _print_fit(exc.result)
        raise
    _print_fit(result)
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


def _print_fit(result: Recalibration) -> None:
    """The operating point on the calibration films, the target's bound, and the warnings."""
    fit = result.fit
    measured = ", ".join(f"{name} {value.text()}" for name, value in fit.point.items())
    print(f"on the calibration films at threshold {fit.choice.threshold:.3f}: {measured}")
    target = fit.choice.target
    if target is not None and target.bound is not None:
        verdict = "reached" if target.reached else "NOT reached"
        print(
            f"target {target.metric} >= {target.target:g} at {target.confidence:.0%} confidence: {verdict} "
            f"(one-sided Clopper-Pearson lower bound {target.bound:.3f})"
        )
    for warning in [*result.warnings, *(result.problems if result.path else [])]:
        print(f"pneumoscan: warning: {warning}", file=sys.stderr)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
