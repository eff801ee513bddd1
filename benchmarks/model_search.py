"""Measure recipe variants on real data: train on ``train/`` and evaluate on ``test-dev/``.

Each variant is the ``default`` recipe (or ``seed``) plus ``--set`` overrides.  Training, model
selection, calibration and the threshold use the validation split cut from ``train/`` only;
``test-dev/`` is only measured.  Finished variants are kept in ``OUT/results.csv`` and skipped on
the next run, so the search can be interrupted and continued.  Prints a markdown table.

    python benchmarks/model_search.py --data ../shared/data/kermany-224 --out runs/search [NAME ...]

``--average NAME NAME ...`` instead measures an ensemble of variants already trained there: the
mean of their calibrated probabilities on ``test-dev`` (a diagnostic of what an ensemble would give).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.calibration import choose_threshold
from pneumoscan.config import CalibrationConfig, Config, recipe
from pneumoscan.data.datamodule import XrayDataModule
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.predict import Predictor
from pneumoscan.training.fit import train

OLD_DEFAULT = ["augment.framing=0", "train.max_epochs=15"]  # the default recipe before framing
SHORT = ["train.max_epochs=15"]

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "seed (notebook)": ("seed", []),
    "old default": ("default", OLD_DEFAULT),
    "old default, zoom 0.25": ("default", [*OLD_DEFAULT, "augment.zoom=0.25"]),
    "old default, EMA 0.999": ("default", [*OLD_DEFAULT, "train.ema_decay=0.999"]),
    "old default, EMA 0.99": ("default", [*OLD_DEFAULT, "train.ema_decay=0.99"]),
    "old default, widths 32-256": (
        "default",
        [*OLD_DEFAULT, 'model.options={"stem_stride": 4, "widths": [32, 64, 128, 256]}'],
    ),
    "old default, balanced sampling": (
        "default",
        [*OLD_DEFAULT, "data.balanced_sampling=true", "train.class_weighted_loss=false"],
    ),
    "default, 15 epochs": ("default", SHORT),
    "default, 15 epochs, seed 1": ("default", [*SHORT, "train.seed=1"]),
    "default, 15 epochs, balanced sampling": (
        "default",
        [*SHORT, "data.balanced_sampling=true", "train.class_weighted_loss=false"],
    ),
    "default, 15 epochs, framing 0.35": ("default", [*SHORT, "augment.framing=0.35"]),
    "default, 15 epochs, framing 0.35, no zoom/shift": (
        "default",
        [*SHORT, "augment.framing=0.35", "augment.zoom=0", "augment.shift=0"],
    ),
    "default": ("default", []),
    "default, seed 1": ("default", ["train.seed=1"]),
}


def sensitivity_rule_threshold(predictor: Predictor, config: Config, train_dir: Path) -> float:
    """Threshold the ``sensitivity`` rule (target 0.98) would pick on this model's validation split."""
    val = XrayDataModule(train_dir, config, progress=False).dataset("val")
    rule = CalibrationConfig(threshold_rule="sensitivity-point", target_sensitivity=0.98)
    return choose_threshold(predictor.probabilities(val.pixels), val.labels, rule).threshold


def run_dir_of(out: Path, name: str) -> Path:
    """Where variant ``name`` is trained under ``out``."""
    return out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "").replace("/", "-")


def average_variants(names: list[str], data: Path, out: Path) -> dict[str, object]:
    """Test-dev metrics of the mean calibrated probability of trained variants (each at 0.5)."""
    frames = []
    for name in names:
        predictor = Predictor.load(run_dir_of(out, name) / "model.safetensors")
        frames.append(evaluate(predictor, data / "test-dev", progress=False).predictions)
    labels = frames[0]["label"].to_numpy()
    probs = np.mean([frame["probability"].to_numpy() for frame in frames], axis=0)
    metrics = binary_metrics(labels, probs, 0.5)
    return {
        "average of": " + ".join(names),
        **{key: round(metrics[key], 4) for key in ("accuracy", "roc_auc", "sensitivity", "specificity")},
    }


def run_variant(name: str, data: Path, out: Path) -> dict[str, object]:
    """Train one variant and measure it on validation and test-dev."""
    base, overrides = VARIANTS[name]
    config = recipe(base).with_overrides(overrides)
    run_dir = run_dir_of(out, name)
    started = time.perf_counter()
    result = train(data / "train", run_dir, config, progress=False)
    minutes = (time.perf_counter() - started) / 60
    predictor = Predictor.load(result.model_path)
    test = evaluate(predictor, data / "test-dev", progress=False)
    labels, probs = test.predictions["label"].to_numpy(), test.predictions["probability"].to_numpy()
    at_half = binary_metrics(labels, probs, 0.5)
    sens_threshold = sensitivity_rule_threshold(predictor, config, data / "train")
    at_sens = binary_metrics(labels, probs, sens_threshold)
    val = result.metrics["validation"]
    return {
        "variant": name,
        "train min": round(minutes, 1),
        "epochs": result.metrics["epochs"],
        "val AUC": round(val["roc_auc"], 4),
        "threshold": round(test.metrics["threshold"], 3),
        "test-dev acc": round(test.metrics["accuracy"], 3),
        "test-dev AUC": round(test.metrics["roc_auc"], 4),
        "sens": round(test.metrics["sensitivity"], 3),
        "spec": round(test.metrics["specificity"], 3),
        "acc@0.5": round(at_half["accuracy"], 3),
        "sens-rule thr": round(sens_threshold, 3),
        "acc/sens/spec @sens-rule": "/".join(
            f"{at_sens[k]:.3f}" for k in ("accuracy", "sensitivity", "specificity")
        ),
        "ECE": round(test.metrics["ece"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kermany-224"))
    parser.add_argument("--out", type=Path, default=Path("runs/search"))
    parser.add_argument("variants", nargs="*", help=f"names to run (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--average", action="store_true", help="measure the mean of trained variants")
    args = parser.parse_args()
    if args.average:
        print(pd.DataFrame([average_variants(args.variants, args.data, args.out)]).to_string(index=False))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "results.csv"
    done = pd.read_csv(table) if table.exists() else pd.DataFrame()
    for name in args.variants or list(VARIANTS):
        if not done.empty and name in set(done["variant"]):
            continue
        row = run_variant(name, args.data, args.out)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(table, index=False)
        print(pd.DataFrame([row]).to_string(index=False), flush=True)
    print(done.to_string(index=False))


if __name__ == "__main__":
    main()
