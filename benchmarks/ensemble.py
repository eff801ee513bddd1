"""Do ensembles help? Average the logits of trained two-site models and measure each site.

Every model and every pair of the given models, and all of them together, are measured on Kermany
``test-dev/`` and on the NIH validation patients (the per-site split of the ``default`` recipe; the
models must have been trained with that split, as ``site_search.py`` and ``train_default.sh`` do),
at threshold 0.5 on the averaged calibrated logits. Prints one line per model or ensemble.

    python benchmarks/ensemble.py --kermany chest_xray --nih nih/labels.csv RUN/model.safetensors ...
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from site_search import nih_validation

from pneumoscan.calibration import calibrated
from pneumoscan.config import recipe
from pneumoscan.data.cache import load_cached
from pneumoscan.data.manifest import scan_sources
from pneumoscan.evaluation.metrics import binary_metrics
from pneumoscan.predict import Predictor

# what is printed for each site: Kermany test-dev, then the NIH validation patients
METRICS = (["accuracy", "roc_auc", "sensitivity", "specificity"], ["roc_auc", "sensitivity", "specificity"])


def site_logits(model: Path, frames: list[list[str]]) -> list[np.ndarray]:
    """Calibrated logits (``logit / temperature``) of ``model`` for each list of files (in their order)."""
    predictor = Predictor.load(model)
    out = []
    for paths in frames:
        cached = load_cached(paths, predictor.meta.preprocess, progress=False)
        assert list(cached.paths) == paths, f"{model}: some films could not be read"
        out.append(predictor.logits(np.asarray(cached.pixels)) / predictor.meta.temperature)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kermany", type=Path, required=True, help="folder with train/ and test-dev/")
    parser.add_argument("--nih", type=Path, required=True, help="NIH labels.csv")
    parser.add_argument("models", type=Path, nargs="+", help="model files")
    args = parser.parse_args()
    test_dev = scan_sources([args.kermany / "test-dev"])
    nih_val = nih_validation(recipe("default"), args.kermany, args.nih)
    frames = [test_dev["path"].tolist(), nih_val["path"].tolist()]
    labels = [test_dev["label"].to_numpy(), nih_val["label"].to_numpy()]
    logits = {model: site_logits(model, frames) for model in args.models}
    groups = [(m,) for m in args.models] + list(itertools.combinations(args.models, 2))
    if len(args.models) > 2:
        groups.append(tuple(args.models))
    print("models | Kermany test-dev acc / AUC / sens / spec | NIH val AUC / sens / spec")
    for group in groups:
        cells = []
        for site, keys in enumerate(METRICS):
            mean = np.mean([logits[m][site] for m in group], axis=0)
            m = binary_metrics(labels[site], calibrated(mean, 1.0), 0.5)
            cells.append(" / ".join(f"{m[k]:.3f}" for k in keys))
        print(" + ".join(m.parent.name or m.name for m in group), "|", " | ".join(cells))


if __name__ == "__main__":
    main()
