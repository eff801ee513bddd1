"""Measure two-site recipe variants: train on Kermany ``train/`` + NIH ``labels.csv``, measure per site.

Each variant is the ``default`` recipe plus ``--set`` overrides, trained on both sites with the knee
X-rays (``--negatives``) as real negatives of the gate.  Training, model selection, calibration and
both thresholds use the validation split cut per site from the training data only.  Measured:

* Kermany ``test-dev/`` (accuracy, ROC-AUC, sensitivity, specificity at the stored threshold);
* the NIH validation patients (the same per-site split the run cut; never trained on), overall and
  per view (AP/PA);
* the gate: share of ``test-dev`` and NIH validation films refused, of the knee files the run held
  out (every fifth, as :class:`~pneumoscan.data.datamodule.XrayDataModule` does) and of generated
  non-chest images of a seed the training never used.

Finished variants are kept in ``OUT/results.csv`` and skipped on the next run.  Prints a markdown table.

    python benchmarks/site_search.py --kermany chest_xray --nih nih/labels.csv --negatives knee/ \\
        --out runs/sites [--set train.accelerator=gpu] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.config import Config, recipe
from pneumoscan.data.cache import load_cached
from pneumoscan.data.datamodule import negative_files
from pneumoscan.data.manifest import default_site, scan_sources, training_pool
from pneumoscan.data.negatives import GENERATORS, generate_negatives
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.predict import Predictor
from pneumoscan.training.fit import train

BALANCED = ["data.site_balance=1.0", "train.monitor=val_auc_worst"]
NETWORK = {"stem_stride": 4, "widths": [24, 48, 96, 192]}  # the default recipe's model.options
VARIANTS: dict[str, list[str]] = {
    "pooled": [],
    "balanced": BALANCED,
    "half-balanced": ["data.site_balance=0.5", "train.monitor=val_auc_worst"],
    "balanced, 20 epochs": [*BALANCED, "train.max_epochs=20"],
    "balanced, 160 px": [*BALANCED, "preprocess.image_size=160"],
    "balanced, widths 32-256": [*BALANCED, 'model.options={"stem_stride": 4, "widths": [32, 64, 128, 256]}'],
    "balanced, no gate": [*BALANCED, "model.gate=false"],
    "balanced, hflip": [*BALANCED, "augment.hflip=true"],
    "balanced, label smoothing 0.1": [*BALANCED, "train.label_smoothing=0.1"],
    "balanced, strong exposure": [
        *BALANCED,
        "augment.brightness=0.4",
        "augment.contrast=0.5",
        "augment.gamma=0.8",
        "augment.noise=0.08",
    ],
    "balanced, 2 blocks per stage": [*BALANCED, "model.options=" + json.dumps({**NETWORK, "blocks": 2})],
    "balanced, 224 px, stride-8 stem": [
        *BALANCED,
        "preprocess.image_size=224",
        'model.options={"stem_stride": 8, "widths": [24, 48, 96, 192]}',
    ],
    "balanced, split seed 1": [*BALANCED, "data.split_seed=1"],
    "balanced, dropout 0.5, weight decay 0.1": [
        *BALANCED,
        "model.options=" + json.dumps({**NETWORK, "dropout": 0.5}),
        "train.weight_decay=0.1",
    ],
    "balanced, 224 px": [*BALANCED, "preprocess.image_size=224"],
    "balanced, label smoothing 0.1, seed 1": [*BALANCED, "train.label_smoothing=0.1", "train.seed=1"],
    "balanced, 224 px, seed 1": [*BALANCED, "preprocess.image_size=224", "train.seed=1"],
    "balanced, 224 px, split seed 1": [*BALANCED, "preprocess.image_size=224", "data.split_seed=1"],
    "balanced, shear 0.2": [*BALANCED, "augment.shear=0.2"],
}


def run_dir_of(out: Path, name: str) -> Path:
    """Where variant ``name`` is trained under ``out``."""
    return out / "".join(c if c.isalnum() else "_" for c in name)


def _scores(predictor: Predictor, paths: list[str]) -> tuple[np.ndarray, list[str]]:
    cached = load_cached(paths, predictor.meta.preprocess, progress=False)
    return predictor.scores(np.asarray(cached.pixels)), cached.paths


def _refused(predictor: Predictor, ood: np.ndarray) -> float:
    gate = predictor.meta.gate
    return float((ood > gate.threshold).mean()) if gate is not None and ood.size else float("nan")


def _site_metrics(predictor: Predictor, frame: pd.DataFrame, prefix: str) -> dict[str, float]:
    scores, paths = _scores(predictor, frame["path"].tolist())
    rows = frame.set_index("path").loc[paths]
    m = binary_metrics(rows["label"].to_numpy(), scores[:, 0], predictor.threshold)
    out = {
        f"{prefix} acc": m["accuracy"],
        f"{prefix} AUC": m["roc_auc"],
        f"{prefix} sens": m["sensitivity"],
        f"{prefix} spec": m["specificity"],
        f"{prefix} refused": _refused(predictor, scores[:, 1]),
    }
    if "view" in rows and (rows["view"] != "").any():
        for view, part in rows.groupby("view"):
            index = [paths.index(p) for p in part.index]
            if part["label"].nunique() == 2:
                auc = binary_metrics(part["label"].to_numpy(), scores[index, 0], predictor.threshold)[
                    "roc_auc"
                ]
                out[f"{prefix} AUC {view}"] = auc
    return out


def nih_validation(config: Config, kermany: Path, nih: Path) -> pd.DataFrame:
    """The manifest rows of the NIH films that ``train``'s per-site split puts in validation."""
    frame = scan_sources([kermany / "train", nih])
    data = config.data
    pool = training_pool(frame, data.val_fraction, data.min_val_images, data.split_seed)
    return pool[(pool["site"] == default_site(nih)) & (pool["split"] == "val")]


def write_validation_csv(config: Config, kermany: Path, nih: Path, out: Path) -> None:
    """Write the NIH validation films as a labels CSV (absolute paths) for ``pneumoscan evaluate``."""
    rows = nih_validation(config, kermany, nih)
    labels = rows["label"].map({0: "NORMAL", 1: "PNEUMONIA"})
    table = rows.assign(path=rows["path"].map(os.path.abspath), label=labels)
    table[["path", "label", "patient_id", "view", "age", "sex"]].to_csv(out, index=False)


def measure(
    model: Path, config: Config, kermany: Path, nih: Path, negatives: Path | None
) -> dict[str, float]:
    """Per-site and gate figures of a trained variant (see the module docstring)."""
    predictor = Predictor.load(model)
    test_dev = scan_sources([kermany / "test-dev"])
    nih_val = nih_validation(config, kermany, nih)
    result = {**_site_metrics(predictor, test_dev, "Kermany"), **_site_metrics(predictor, nih_val, "NIH val")}
    result["NIH val films"] = len(nih_val)
    if negatives is not None:
        held_out = negative_files(negatives, "val")
        result["knee refused"] = _refused(predictor, _scores(predictor, held_out)[0][:, 1])
    side = predictor.meta.preprocess.image_size
    generated = generate_negatives(len(GENERATORS) * 40, side, seed=987_654)
    ood = predictor.scores(generated)[:, 1]
    result["generated refused"] = _refused(predictor, ood)
    for i, kind in enumerate(GENERATORS):
        result[f"refused {kind}"] = _refused(predictor, ood[i :: len(GENERATORS)])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kermany", type=Path, required=True, help="folder with train/ and test-dev/")
    parser.add_argument("--nih", type=Path, required=True, help="NIH labels.csv")
    parser.add_argument("--negatives", type=Path, help="folder of real non-chest images (knee X-rays)")
    parser.add_argument("--out", type=Path, default=Path("runs/sites"))
    parser.add_argument("--set", action="append", default=[], help="override for every variant")
    parser.add_argument("--write-val-csv", type=Path, help="only write the NIH validation films to this CSV")
    parser.add_argument("names", nargs="*", help="variants (default: all)")
    args = parser.parse_args()
    if args.write_val_csv:
        write_validation_csv(recipe("default"), args.kermany, args.nih, args.write_val_csv)
        return
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    table = out / "results.csv"
    done = pd.read_csv(table) if table.exists() else pd.DataFrame(columns=["variant"])
    for name in args.names or list(VARIANTS):
        if name in set(done["variant"]):
            continue
        config = recipe("default").with_overrides(
            [
                *VARIANTS[name],
                *args.set,
                *([f'gate.negatives=["{args.negatives}"]'] if args.negatives else []),
            ]
        )
        started = time.perf_counter()
        result = train([args.kermany / "train", args.nih], run_dir_of(out, name), config, progress=False)
        seconds = time.perf_counter() - started
        assert result.model_path is not None
        row = {"variant": name, "minutes": round(seconds / 60, 1)}
        row.update(measure(result.model_path, config, args.kermany, args.nih, args.negatives))
        print(row, flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(table, index=False)
    print(done.set_index("variant").T.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
