"""Does a calibrated target sensitivity hold on a site's *next* patients?  Point rule vs bound rule.

The films of one site (a labels CSV of patients the model never saw, e.g. the NIH validation
patients of the bundled model: ``benchmarks/site_search.py --write-val-csv``) are scored once by the
model (films its gate refuses are left out, as ``calibrate`` and ``evaluate`` leave them out).  Then,
over many random patient splits, the calibration part is calibrated with the same function that
``pneumoscan calibrate`` runs (:func:`pneumoscan.recalibrate.fit_operating_point`: temperature,
then the threshold rule) and the other part -- new patients -- is measured at that threshold:

* ``sensitivity-point``: the highest threshold keeping the calibration films' sensitivity >= S;
* ``sensitivity-bound``: the highest threshold whose one-sided Clopper-Pearson lower bound of the
  calibration sensitivity at ``--confidence`` is >= S (``calibrate``'s default for a target).

For each rule: how often ``calibrate`` would refuse the split (fewer than 20 films of a class, a
target the films cannot support, scores without signal), and over all splits, with the threshold
``--force`` would write: how often the new patients' sensitivity was >= S, the mean specificity paid
and the mean threshold.  Finally the real ``calibrate`` and ``evaluate`` commands run on a few of the
splits to check that they agree with the function (the same refusal, threshold and new-patient
sensitivity).

    python benchmarks/calibration_guarantee.py /tmp/nih_val.csv [--model bundled] [--splits 500]
        [--target 0.85] [--confidence 0.95] [--calibration-fraction 0.5] [--cli-splits 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.calibration import calibrated
from pneumoscan.cli import main as cli
from pneumoscan.config import CalibrationConfig
from pneumoscan.data.manifest import scan_sources
from pneumoscan.errors import DataError
from pneumoscan.evaluation.scoring import score_manifest
from pneumoscan.model_file import read_meta
from pneumoscan.model_source import resolve_model
from pneumoscan.predict import Predictor
from pneumoscan.recalibrate import check_counts, fit_operating_point, signal_problem

RULES = ("sensitivity-point", "sensitivity-bound")


def split_patients(patients: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per film, whether its patient is drawn into the calibration part."""
    unique = np.unique(patients)
    chosen = rng.choice(unique, size=round(fraction * len(unique)), replace=False)
    return np.isin(patients, chosen)


def one_split(
    logits: np.ndarray, labels: np.ndarray, calibrate_on: np.ndarray, rule: CalibrationConfig
) -> dict[str, float | bool | str]:
    """Calibrate on ``calibrate_on`` films like ``calibrate``; measure the others at that threshold."""
    cal_logits, cal_labels = logits[calibrate_on], labels[calibrate_on]
    fit = fit_operating_point(cal_logits, cal_labels, rule)
    target = fit.choice.target
    reasons = []
    try:
        check_counts(pd.DataFrame({"label": cal_labels}), "split")
    except DataError:
        reasons.append("too few films")
    if signal_problem(cal_logits, cal_labels):
        reasons.append("no signal")
    if target is not None and not target.reached:
        reasons.append("target unsupported")
    new = ~calibrate_on
    flagged = calibrated(logits[new], fit.temperature) >= fit.choice.threshold
    new_labels = labels[new]
    return {
        "threshold": fit.choice.threshold,
        "temperature": fit.temperature,
        "calibration sensitivity": fit.point["sensitivity"].estimate,
        "sensitivity": float(flagged[new_labels == 1].mean()),
        "specificity": float((~flagged[new_labels == 0]).mean()),
        "refusal": " + ".join(reasons),
    }


def table(results: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per rule: refusals, how often the target held on new patients, specificity and threshold."""
    rows = []
    for rule, group in results.groupby("rule", sort=False):
        accepted = group[group["refusal"] == ""]
        held = group["sensitivity"] >= target
        rows.append(
            {
                "rule": rule,
                "splits": len(group),
                "calibrate refuses": f"{(group['refusal'] != '').mean():.0%}",
                "why": ", ".join(
                    f"{k} {v}" for k, v in group["refusal"][group["refusal"] != ""].value_counts().items()
                ),
                f"new sens >= {target:g} (all splits)": f"{held.mean():.0%}",
                "(accepted splits)": f"{held[accepted.index].mean():.0%}" if len(accepted) else "n/a",
                "mean new sensitivity": round(group["sensitivity"].mean(), 3),
                "mean new specificity": round(group["specificity"].mean(), 3),
                "mean threshold": round(group["threshold"].mean(), 3),
                "mean calibration sensitivity": round(group["calibration sensitivity"].mean(), 3),
            }
        )
    return pd.DataFrame(rows)


def _reasons(group: pd.DataFrame) -> pd.Series:
    return group["refusal"][group["refusal"] != ""].value_counts()


def cli_check(
    model: str, frame: pd.DataFrame, split: np.ndarray, rule: CalibrationConfig, expected: dict, work: Path
) -> str:
    """Run ``calibrate`` (and ``evaluate`` on the other part) on one split; compare with ``expected``."""
    columns = ["path", "label", "patient_id", "view", "age", "sex"]
    named = frame.assign(label=frame["class_name"])[columns]
    cal_csv, new_csv, out = work / "calibrate.csv", work / "new.csv", work / "calibrated.safetensors"
    named[split].to_csv(cal_csv, index=False)
    named[~split].to_csv(new_csv, index=False)
    out.unlink(missing_ok=True)
    target = rule.target_sensitivity
    argv = ["calibrate", model, str(cal_csv), "--out", str(out), "--rule", rule.threshold_rule]
    argv += ["--target-sensitivity", str(target), "--quiet"]
    argv += ["--confidence", str(rule.confidence)] if rule.threshold_rule.endswith("-bound") else []
    stderr = StringIO()
    with redirect_stdout(StringIO()), redirect_stderr(stderr):
        code = cli(argv)
    if code != 0:
        agree = expected["refusal"] != ""
        verdict = "agrees" if agree else "DISAGREES"
        line = stderr.getvalue().strip().splitlines()[-1]
        return f"calibrate exit {code} ({verdict}: function: {expected['refusal'] or 'accept'}): {line}"
    meta = read_meta(out)
    with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
        assert cli(["evaluate", str(out), str(new_csv), "--out", str(work / "eval"), "--quiet"]) == 0
    measured = json.loads((work / "eval" / "metrics.json").read_text())
    same = (
        expected["refusal"] == ""
        and abs(meta.threshold - expected["threshold"]) < 1e-6
        and abs(measured["sensitivity"] - expected["sensitivity"]) < 1e-9
        and abs(measured["specificity"] - expected["specificity"]) < 1e-9
    )
    return (
        f"calibrate exit 0, threshold {meta.threshold:.4f} (function {expected['threshold']:.4f}); "
        f"evaluate on new patients: sensitivity {measured['sensitivity']:.3f} "
        f"(function {expected['sensitivity']:.3f}), "
        f"specificity {measured['specificity']:.3f} (function {expected['specificity']:.3f}): "
        + ("agree" if same else "DISAGREE")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("site_csv", type=Path, help="labels CSV of patients the model never saw")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--splits", type=int, default=500)
    parser.add_argument("--target", type=float, default=0.85, help="target sensitivity S")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--calibration-fraction", type=float, default=0.5, help="patients calibrated on")
    parser.add_argument("--cli-splits", type=int, default=3, help="splits also run through the CLI")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    predictor = Predictor.load(resolve_model(None if args.model == "bundled" else args.model).path)
    frame = scan_sources(args.site_csv)
    scored = score_manifest(predictor, frame, args.site_csv, progress=False)
    refused = scored.refused_by(predictor)
    rows = scored.rows[~refused].reset_index(drop=True)
    logits, labels = scored.logits[~refused], rows["label"].to_numpy().astype(int)
    patients = rows["patient_id"].astype(str).to_numpy()
    print(
        f"{predictor.meta.model_id()} on {args.site_csv}: {len(rows)} films judged ({int(refused.sum())} "
        f"refused by the gate), {int(labels.sum())} PNEUMONIA, {int((labels == 0).sum())} NORMAL, "
        f"{len(np.unique(patients))} patients; {args.splits} random patient splits, "
        f"{args.calibration_fraction:.0%} of the patients calibrated on, the rest measured"
    )
    rules = {
        name: CalibrationConfig(
            threshold_rule=name, target_sensitivity=args.target, confidence=args.confidence
        )
        for name in RULES
    }
    rng = np.random.default_rng(args.seed)
    splits = [split_patients(patients, args.calibration_fraction, rng) for _ in range(args.splits)]
    results = pd.DataFrame(
        [
            {"rule": name, "split": i, **one_split(logits, labels, split, rule)}
            for i, split in enumerate(splits)
            for name, rule in rules.items()
        ]
    )
    positives = [int(labels[split].sum()) for split in splits]
    print(
        f"PNEUMONIA films in the calibration part: {min(positives)}-{max(positives)} "
        f"(mean {np.mean(positives):.1f})"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table(results, args.target).to_string(index=False))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(min(args.cli_splits, args.splits)):
            for name, rule in rules.items():
                expected = results[(results["split"] == i) & (results["rule"] == name)].iloc[0].to_dict()
                print(
                    f"CLI split {i} {name}: "
                    + cli_check(args.model, rows, splits[i], rule, expected, Path(tmp))
                )


if __name__ == "__main__":
    main()
