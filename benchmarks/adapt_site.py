"""How much a new hospital gains from ``calibrate`` and from fine-tuning, and how many films it needs.

The films of one new site (a labels CSV, e.g. NIH's) are split by patient, stratified, into a
*labelled pool* the hospital would label itself and a *test* half that only measures.  A model that
never saw the site is then measured on the test half:

1. as shipped;
2. after ``pneumoscan calibrate`` on the first N films of the pool (N = 60, 120, 240, all;
   ``calibrate`` needs 20 of each class), with the
   Youden rule (the threshold maximising sensitivity + specificity on those films);
3. after fine-tuning (``train --init-from``) on the whole pool, then calibrated on it likewise.

Prints a table (ROC-AUC, sensitivity, specificity, accuracy on the test half).

    python benchmarks/adapt_site.py MODEL nih/labels.csv --out runs/adapt [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from pneumoscan.config import CalibrationConfig, Config
from pneumoscan.data.labels_csv import read_labels_csv
from pneumoscan.data.manifest import patient_id, patient_split
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.model_file import read_meta
from pneumoscan.predict import Predictor
from pneumoscan.recalibrate import recalibrate
from pneumoscan.training.fit import train

YOUDEN = CalibrationConfig(threshold_rule="youden")


def split_site(csv: Path, out: Path, seed: int = 7) -> tuple[Path, pd.DataFrame]:
    """Write ``test.csv`` (half the patients) and return it with the labelled pool (shuffled)."""
    rows = read_labels_csv(csv)
    rows["path"] = rows["path"].map(os.path.abspath)  # the new CSVs live in another folder
    names = rows["path"].map(lambda p: Path(p).name)
    rows = rows.assign(patient_id=rows["patient"].where(rows["patient"] != "", names.map(patient_id)))
    halves = patient_split(rows, 0.5, seed)
    columns = ["path", "label", "patient", "view", "age", "sex"]
    test = halves[halves["split"] == "val"].assign(patient=lambda f: f["patient_id"])[columns]
    test_csv = out / "test.csv"
    test.to_csv(test_csv, index=False)
    pool = halves[halves["split"] == "train"].assign(patient=lambda f: f["patient_id"])[columns]
    return test_csv, pool.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def measure(model: Path, test_csv: Path) -> dict[str, float]:
    """Test-half figures of ``model`` at its stored threshold."""
    metrics = evaluate(Predictor.load(model), test_csv, progress=False).metrics
    keys = ("roc_auc", "sensitivity", "specificity", "accuracy", "threshold")
    return {key: round(float(metrics[key]), 3) for key in keys} | {"films": metrics["images"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="a model that never saw the site")
    parser.add_argument("site_csv", type=Path, help="labels CSV of the new site")
    parser.add_argument("--out", type=Path, default=Path("runs/adapt"))
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    test_csv, pool = split_site(args.site_csv, out)
    rows = [{"step": "as shipped", "labelled films": 0, **measure(args.model, test_csv)}]
    for count in [n for n in (60, 120, 240) if n < len(pool)] + [len(pool)]:
        subset = out / f"pool-{count}.csv"
        pool.head(count).to_csv(subset, index=False)
        calibrated = recalibrate(
            args.model, subset, out / f"calibrated-{count}.safetensors", YOUDEN, progress=False
        )
        rows.append({"step": "calibrate", "labelled films": count, **measure(calibrated.path, test_csv)})
        print(rows[-1], flush=True)
    pool_csv = out / f"pool-{len(pool)}.csv"
    config = read_meta(args.model).config or Config()
    config = config.with_overrides(
        [f"train.max_epochs={args.epochs}", "data.sources=[]", "gate.negatives=[]"]
    )
    started = time.perf_counter()
    tuned = train([pool_csv], out / "fine-tuned", config, init_from=args.model, progress=False)
    assert tuned.model_path is not None
    minutes = (time.perf_counter() - started) / 60
    recal = recalibrate(
        tuned.model_path, pool_csv, out / "fine-tuned-calibrated.safetensors", YOUDEN, progress=False
    )
    rows.append(
        {
            "step": f"fine-tune {args.epochs} epochs ({minutes:.1f} min) + calibrate",
            "labelled films": len(pool),
        }
        | measure(recal.path, test_csv)
    )
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
