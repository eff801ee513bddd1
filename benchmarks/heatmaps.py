"""Which heat map points where the readers saw the opacity: the map variants side by side.

For one model file, a boxes CSV and its data (labels CSV or folder), every variant of
:class:`~pneumoscan.config.ExplainConfig` below is measured on the same PNEUMONIA films with boxes,
through the code of ``pneumoscan evaluate --boxes`` (:func:`pneumoscan.evaluation.localisation.localise`):
pointing-game hit rate with its 95 % Wilson interval, the share of the map's mass inside the boxes,
the chance baseline (a uniform map over the model's view, exact), and the time of a map:

* ``ms/film``: wall time of the whole per-film step (decode, prediction, map), averaged;
* ``ms/map``: median wall time of the map alone (:func:`pneumoscan.explain.heat_maps` on one film),
  and ``cpu ms/map`` its process CPU time, which a busy machine inflates less.

    python benchmarks/heatmaps.py [MODEL] --data DATA --boxes BOXES.csv [--limit 200] [--threads 1]

Pick the chosen variant for a model with ``--set explain.method=...`` when training, or store it in
an existing model file with ``--write OUT.safetensors --variant NAME``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from pneumoscan.config import ExplainConfig
from pneumoscan.data.boxes_csv import read_boxes_csv
from pneumoscan.data.manifest import evaluation_split, scan_sources
from pneumoscan.evaluation.localisation import localise
from pneumoscan.explain import heat_maps, require_torch_engine
from pneumoscan.model_file import read_model, save_model
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import load_prepared, to_model_input

VARIANTS = {
    "gradcam -1 (today)": ExplainConfig(),
    "gradcam++ -1": ExplainConfig(method="gradcam++"),
    "layercam -1": ExplainConfig(method="layercam"),
    "gradcam -2": ExplainConfig(layers=[-2]),
    "gradcam++ -2": ExplainConfig(method="gradcam++", layers=[-2]),
    "layercam -2": ExplainConfig(method="layercam", layers=[-2]),
    "gradcam mean -2,-1": ExplainConfig(layers=[-2, -1]),
    "gradcam product -2,-1": ExplainConfig(layers=[-2, -1], combine="product"),
    "layercam product -2,-1": ExplainConfig(method="layercam", layers=[-2, -1], combine="product"),
    "gradcam -1 shift": ExplainConfig(smoothing="shift"),
    "gradcam -1 shift+flip": ExplainConfig(smoothing="shift+flip"),
    "gradcam product -2,-1 shift": ExplainConfig(layers=[-2, -1], combine="product", smoothing="shift"),
}
TIMED_FILMS = 20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default="bundled")
    parser.add_argument("--data", required=True, help="data folder or labels CSV")
    parser.add_argument("--boxes", required=True, help="boxes CSV of films of --data")
    parser.add_argument("--split", help="split to measure (default: test, or the only one)")
    parser.add_argument(
        "--limit", type=int, default=200, help="PNEUMONIA films with boxes measured (first N)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--write", metavar="OUT", help="write MODEL with --variant's map stored, then stop")
    parser.add_argument("--variant", choices=list(VARIANTS), help="the variant --write stores")
    args = parser.parse_args()
    if args.write:
        write_variant(args.model, args.variant, args.write)
        return
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model)
    net = require_torch_engine(predictor)
    scanned = scan_sources(args.data)
    boxes = read_boxes_csv(args.boxes, scanned["path"])
    frame = evaluation_split(scanned, args.split)
    boxed = set(boxes["path"])
    pneumonia = (os.path.abspath(path) for path in frame[frame["label"] == 1]["path"])
    films = [path for path in pneumonia if path in boxed][: args.limit]
    cfg = predictor.meta.preprocess
    timed = [to_model_input(load_prepared(path, cfg), cfg) for path in films[:TIMED_FILMS]]
    model = predictor.meta.model_id()
    print(f"{model}: {len(films)} PNEUMONIA films with boxes, {args.threads} torch thread(s)")
    columns = (
        ("hit rate [95% CI]", 22),
        ("mass", 6),
        ("chance", 7),
        ("ms/film", 8),
        ("ms/map", 7),
        ("cpu ms", 7),
    )
    print(f"{'variant':30} " + " ".join(f"{title:>{width}}" for title, width in columns))
    for name in args.variants or list(VARIANTS):
        variant = VARIANTS[name]
        predictor.meta.explain = variant
        start = time.perf_counter()
        metrics = localise(predictor, films, boxes, args.boxes).metrics
        per_film = (time.perf_counter() - start) / max(1, len(films)) * 1000
        wall, cpu = map_times(net, timed, variant)
        low, high = metrics["hit_rate_interval"]
        print(
            f"{name:30} {metrics['hit_rate']:>8.3f} [{low:.3f}-{high:.3f}] {metrics['mass_in_boxes']:>6.3f} "
            f"{metrics['chance_hit_rate']:>7.3f} {per_film:>8.0f} {wall:>7.0f} {cpu:>7.0f}",
            flush=True,
        )


def map_times(net: torch.nn.Module, batches: list[np.ndarray], variant: ExplainConfig) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one film's map."""
    heat_maps(net, batches[0], variant)  # warm up
    walls, cpus = [], []
    for batch in batches:
        wall, cpu = time.perf_counter(), time.process_time()
        heat_maps(net, batch, variant)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def write_variant(model: str, variant: str | None, out: str) -> None:
    """Store ``variant`` as the map of a copy of ``model``."""
    if variant is None:
        raise SystemExit("--write needs --variant")
    from pneumoscan.model_source import resolve_model

    meta, tensors = read_model(resolve_model(model).path)
    save_model(out, tensors, meta.model_copy(update={"explain": VARIANTS[variant]}))
    print(f"{out}: {model} showing {variant}")


if __name__ == "__main__":
    main()
