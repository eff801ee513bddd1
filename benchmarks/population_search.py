"""Measure recipe variants trained on every source: Kermany, NIH, RSNA and NIH films with other findings.

Each variant is the ``default`` recipe plus ``--set`` overrides, trained on Kermany ``train/``, the NIH
``labels.csv``, the RSNA ``labels.csv`` and the clear (``opacity`` 0) films of ``nih-cxr14-other`` as
negatives of the NIH site, with the knee X-rays as real negatives of the gate.  Training, model
selection, calibration and the thresholds use the validation split cut per site (by patient, class
and view) from those films only.  Measured on films the run never trained on:

* Kermany ``test-dev/``: accuracy, ROC-AUC, sensitivity, specificity at the stored threshold;
* the NIH and RSNA validation patients: the same, ROC-AUC per view (AP/PA), specificity per view,
  and for NIH the sensitivity of pneumonia films with and without an infiltration label;
* OTHER films: the share called PNEUMONIA of the clear validation films and of the 111 ambiguous
  (``opacity`` 1) films, which no variant trains on;
* the gate: share of each source's validation chest films refused, of held-out knee X-rays, of generated
  non-chest images of an unused seed;
* heat maps on the RSNA validation PNEUMONIA films with boxes, as ``evaluate --boxes`` measures them:
  pointing game (the map's peak inside a radiologist's box), the map's mass inside the boxes, and the
  chance rate of a uniform map over the model's view.

Finished variants are kept in ``OUT/results.csv`` and skipped on the next run.  Prints a table.

    python benchmarks/population_search.py --shared ../shared/data --out runs/populations [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.config import Config, recipe
from pneumoscan.data.boxes_csv import read_boxes_csv
from pneumoscan.data.cache import load_cached
from pneumoscan.data.datamodule import negative_files
from pneumoscan.data.manifest import scan_sources, training_pool
from pneumoscan.data.negatives import GENERATORS, generate_negatives
from pneumoscan.evaluation.localisation import localise
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.predict import Predictor
from pneumoscan.training.fit import train

NETWORK = {"stem_stride": 4, "widths": [24, 48, 96, 192]}  # the default recipe's model.options
FINE = {**NETWORK, "strides": [1, 2, 2, 1]}  # last stage 8 x 8 at 128 px (1.75x the compute)
FINE96 = {"stem_stride": 4, "widths": [24, 48, 96, 96], "strides": [1, 2, 2, 1]}  # 8 x 8, the same compute
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "views balanced": ["data.balance_views=true"],
    "views balanced, fine last stage": ["data.balance_views=true", "model.options=" + json.dumps(FINE)],
    "views balanced, fine last stage 96": ["data.balance_views=true", "model.options=" + json.dumps(FINE96)],
    "fine last stage 96": ["model.options=" + json.dumps(FINE96)],
    "fine last stage 96, EMA": ["model.options=" + json.dumps(FINE96), "train.ema_decay=0.995"],
    "views balanced, fine last stage 96, EMA": [
        "data.balance_views=true",
        "model.options=" + json.dumps(FINE96),
        "train.ema_decay=0.995",
    ],
    "views balanced, fine last stage, 30 epochs": [
        "data.balance_views=true",
        "model.options=" + json.dumps(FINE),
        "train.max_epochs=30",
    ],
    "views balanced, fine last stage, EMA": [
        "data.balance_views=true",
        "model.options=" + json.dumps(FINE),
        "train.ema_decay=0.999",
    ],
    "views balanced, fine last stage, 160 px": [
        "data.balance_views=true",
        "model.options=" + json.dumps(FINE),
        "preprocess.image_size=160",
    ],
}


def sources(shared: Path, out: Path) -> dict[str, Path]:
    """The training sources; writes ``OUT/nih-other-clear.csv``: the clear OTHER films as NIH negatives."""
    other = pd.read_csv(shared / "nih-cxr14-other" / "labels.csv", dtype=str)
    clear = other[other["opacity"] == "0"]
    table = clear.assign(
        file=[str((shared / "nih-cxr14-other" / f).resolve()) for f in clear["file"]],
        label="NORMAL",
        site="nih-cxr14",
    )
    out.mkdir(parents=True, exist_ok=True)
    table[["file", "label", "patient", "site", "view", "age", "sex"]].to_csv(
        out / "nih-other-clear.csv", index=False
    )
    return {
        "kermany": shared / "kermany-224" / "train",
        "nih": shared / "nih-cxr14" / "labels.csv",
        "rsna": shared / "rsna-pneumonia" / "labels.csv",
        "other": out / "nih-other-clear.csv",
    }


def run_dir_of(out: Path, name: str) -> Path:
    """Where variant ``name`` is trained under ``out``."""
    return out / "".join(c if c.isalnum() else "_" for c in name)


def _scores(predictor: Predictor, paths: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cached = load_cached(paths, predictor.meta.preprocess, progress=False)
    pixels = np.asarray(cached.pixels)
    return predictor.scores(pixels), pixels, cached.paths


def _refused(predictor: Predictor, ood: np.ndarray) -> float:
    gate = predictor.meta.gate
    return float((ood > gate.threshold).mean()) if gate is not None and ood.size else float("nan")


def _auc(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    return binary_metrics(labels, scores, threshold)["roc_auc"]


def _called(scores: np.ndarray, threshold: float) -> float:
    return float((scores >= threshold).mean()) if scores.size else float("nan")


def _site_metrics(predictor: Predictor, rows: pd.DataFrame, prefix: str) -> dict[str, float]:
    scores, _, paths = _scores(predictor, rows["path"].tolist())
    rows = rows.set_index("path").loc[paths]
    t = predictor.threshold
    p, labels = scores[:, 0], rows["label"].to_numpy()
    m = binary_metrics(labels, p, t)
    out = {
        f"{prefix} acc": m["accuracy"],
        f"{prefix} AUC": m["roc_auc"],
        f"{prefix} sens": m["sensitivity"],
        f"{prefix} spec": m["specificity"],
        f"{prefix} refused": _refused(predictor, scores[:, 1]),
    }
    views = rows["view"].to_numpy() if "view" in rows else np.array([""] * len(rows))
    for view in sorted(set(views) - {""}):
        part = views == view
        out[f"{prefix} AUC {view}"] = _auc(labels[part], p[part], t)
        out[f"{prefix} spec {view}"] = 1 - _called(p[part & (labels == 0)], t)
    return out


def validation_rows(config: Config, srcs: dict[str, Path]) -> pd.DataFrame:
    """The manifest rows that ``train``'s per-site split puts in validation (never trained on)."""
    frame = scan_sources(list(srcs.values()))
    data = config.data
    pool = training_pool(frame, data.val_fraction, data.min_val_images, data.split_seed)
    return pool[pool["split"] == "val"]


def pointing_game(
    predictor: Predictor, rows: pd.DataFrame, source: Path, boxes_csv: Path
) -> dict[str, float]:
    """``evaluate --boxes`` on the boxed PNEUMONIA films of ``rows`` (films of ``source``): the map's peak
    inside a reader's box, the map's mass inside the boxes, and a uniform map's chance of either."""
    films = rows.loc[rows["label"] == 1, "path"].tolist()
    boxes = read_boxes_csv(boxes_csv, scan_sources([source])["path"])
    metrics = localise(predictor, films, boxes, boxes_csv).metrics
    return {
        "boxed films": metrics["films"],
        "pointing game": metrics["hit_rate"],
        "mass in boxes": metrics["mass_in_boxes"],
        "pointing chance": metrics["chance_hit_rate"],
    }


def measure(model: Path, config: Config, srcs: dict[str, Path], shared: Path) -> dict[str, float]:
    """Per-source, OTHER, gate and heat-map figures of a trained variant (see the module docstring)."""
    predictor = Predictor.load(model)
    t = predictor.threshold
    val = validation_rows(config, srcs)
    result = {**_site_metrics(predictor, scan_sources([shared / "kermany-224" / "test-dev"]), "Kermany")}
    other_paths = set(scan_sources([srcs["other"]])["path"])
    nih = val[(val["site"] == "nih-cxr14") & ~val["path"].isin(other_paths)]
    result.update(_site_metrics(predictor, nih, "NIH val"))
    result.update(_site_metrics(predictor, val[val["site"] == "nih-rsna"], "RSNA val"))
    nih_labels = pd.read_csv(srcs["nih"], dtype=str).set_index("file")["nih_labels"]
    pneu = nih[nih["label"] == 1]
    with_infiltration = pneu["path"].map(
        lambda p: "Infiltration" in nih_labels.get(f"PNEUMONIA/{Path(p).name}", "")
    )
    for name, part in (("with", pneu[with_infiltration]), ("without", pneu[~with_infiltration])):
        result[f"NIH val sens {name} infiltration"] = _called(
            _scores(predictor, part["path"].tolist())[0][:, 0], t
        )
    other_val = val[val["path"].isin(other_paths)]
    result["OTHER clear val called"] = _called(_scores(predictor, other_val["path"].tolist())[0][:, 0], t)
    result["OTHER clear val films"] = len(other_val)
    table = pd.read_csv(shared / "nih-cxr14-other" / "labels.csv", dtype=str)
    ambiguous = [str(shared / "nih-cxr14-other" / f) for f in table.loc[table["opacity"] == "1", "file"]]
    result["OTHER ambiguous called"] = _called(_scores(predictor, ambiguous)[0][:, 0], t)
    knee = negative_files(shared / "not-chest" / "knee-xray", "val")
    result["knee refused"] = _refused(predictor, _scores(predictor, knee)[0][:, 1])
    generated = generate_negatives(len(GENERATORS) * 40, predictor.meta.preprocess.image_size, seed=987_654)
    result["generated refused"] = _refused(predictor, predictor.scores(generated)[:, 1])
    rsna = val[val["site"] == "nih-rsna"]
    result.update(pointing_game(predictor, rsna, srcs["rsna"], shared / "rsna-pneumonia" / "boxes.csv"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, required=True, help="folder with the data sets")
    parser.add_argument("--out", type=Path, default=Path("runs/populations"))
    parser.add_argument("--set", action="append", default=[], help="override for every variant")
    parser.add_argument("--measure", type=Path, help="only measure this model file (its own config)")
    parser.add_argument("names", nargs="*", help="variants (default: all)")
    args = parser.parse_args()
    out: Path = args.out
    srcs = sources(args.shared, out)
    if args.measure:
        predictor = Predictor.load(args.measure)
        config = predictor.meta.config or recipe("default")
        row = measure(args.measure, config, srcs, args.shared)
        print(pd.Series(row).to_string(float_format=lambda v: f"{v:.3f}"))
        return
    table = out / "results.csv"
    done = pd.read_csv(table) if table.exists() else pd.DataFrame(columns=["variant"])
    negatives = args.shared / "not-chest" / "knee-xray"
    for name in args.names or list(VARIANTS):
        if name in set(done["variant"]):
            continue
        config = recipe("default").with_overrides(
            [*VARIANTS[name], *args.set, f'gate.negatives=["{negatives}"]']
        )
        started = time.perf_counter()
        result = train(list(srcs.values()), run_dir_of(out, name), config, progress=False)
        seconds = time.perf_counter() - started
        assert result.model_path is not None
        row = {"variant": name, "minutes": round(seconds / 60, 1)}
        row.update(measure(result.model_path, config, srcs, args.shared))
        print(row, flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(table, index=False)
    print(done.set_index("variant").T.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
