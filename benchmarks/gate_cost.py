"""What the refusal gate costs: the default network with and without its gate head, side by side.

Both networks are untrained copies of the ``default`` recipe's (timing does not depend on the
weights).  Measured in one run, alternating, ``--repeats`` times each: batch inference (images/s of
``Predictor.scores`` on prepared images) and latency from a 224 px JPEG file to its prediction
(``Predictor.predict_files``: decoding, input checks, network, gate), with the torch engine and,
with ``--onnx``, the ONNX engine.  Prints a table with the ratio gated / plain.

    python benchmarks/gate_cost.py [--repeats 5] [--onnx]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pneumoscan.config import recipe
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.model_file import GateMeta, ModelMeta, save_model
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor
from pneumoscan.synthetic import synthetic_film


def model_file(folder: Path, gate: bool) -> Path:
    """An untrained default-recipe model file, with or without the gate head."""
    config = recipe("default").with_overrides([f"model.gate={str(gate).lower()}"])
    meta = ModelMeta(
        model=config.model,
        preprocess=config.preprocess,
        config=config,
        gate=GateMeta(threshold=0.5, rule="benchmark") if gate else None,
    )
    net = build_model(config.model, config.preprocess)
    return save_model(folder / f"gate-{gate}.safetensors", network_tensors(net), meta)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--onnx", action="store_true", help="also measure the ONNX engine")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    film = folder / "film.jpeg"
    Image.fromarray(synthetic_film(np.random.default_rng(0), True, size=224)).save(film, quality=90)
    predictors: dict[str, dict[bool, Predictor]] = {"torch": {}}
    for gate in (False, True):
        path = model_file(folder, gate)
        predictors["torch"][gate] = Predictor.load(path)
        if args.onnx:
            from pneumoscan.export import export_onnx

            onnx_path = export_onnx(path, folder / f"gate-{gate}.onnx")
            predictors.setdefault("onnx", {})[gate] = Predictor.load(onnx_path, "onnx")
    images = np.random.default_rng(1).integers(0, 256, (64, 128, 128), dtype=np.uint8)

    def throughput(predictor: Predictor) -> float:
        started = time.perf_counter()
        for _ in range(5):
            predictor.scores(images)
        return 5 * len(images) / (time.perf_counter() - started)

    def latency(predictor: Predictor) -> float:
        started = time.perf_counter()
        for _ in range(20):
            predictor.predict_files([film])
        return (time.perf_counter() - started) / 20 * 1000

    print(f"{'measure':<30}{'plain':>10}{'gated':>10}{'gated/plain':>13}")
    for engine, pair in predictors.items():
        for name, measure in (
            (f"infer img/s b64 ({engine})", throughput),
            (f"latency ms 224px ({engine})", latency),
        ):
            plain_runs, gated_runs = [], []
            for _ in range(args.repeats):  # alternate, so that load on the machine hits both alike
                plain_runs.append(measure(pair[False]))
                gated_runs.append(measure(pair[True]))
            plain, gated = statistics.median(plain_runs), statistics.median(gated_runs)
            print(f"{name:<30}{plain:>10.1f}{gated:>10.1f}{gated / plain:>12.2f}x")


if __name__ == "__main__":
    main()
