"""Speed of the notebook's ``seed-cnn`` against the default model, measured side by side in one run.

For each model: training images/s (optimiser steps on random batches through the LightningModule's
network, loss and augmentation), batch inference images/s (torch engine, and onnxruntime in float
and in int8 when the export stack is installed; int8 calibrated on synthetic films), and
single-image latency from a JPEG file to a probability (median of repeated
``Predictor.predict_files``).  Models are untrained networks of the two recipes (speed does not
depend on the weights).  Prints a table and the default/seed ratios.

    python benchmarks/speed.py [--seconds 8] [--batch 64 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pneumoscan.augment import training_view
from pneumoscan.config import Config, recipe
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.predict import Predictor
from pneumoscan.synthetic import synthetic_film
from pneumoscan.training.module import XrayClassifier


def _rate(step: Callable[[], int], seconds: float) -> float:
    step()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def train_rate(config: Config, seconds: float) -> float:
    """Images/s of full training steps (augmentation, forward, backward, optimiser) on random batches."""
    module = XrayClassifier(config.model_dump())
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    size, batch = training_view(config.preprocess, config.augment).image_size, config.train.batch_size
    x = torch.rand(batch, config.preprocess.channels, size, size)  # as cached: wider with framing
    y = torch.randint(0, 2, (batch,)).float()

    def step() -> int:
        logits = module(module.augment(x))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return batch

    return _rate(step, seconds)


def save_untrained(config: Config, path: Path) -> Path:
    """A model file of ``config``'s architecture with random weights."""
    module = XrayClassifier(config.model_dump())
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config)
    return save_model(path, network_tensors(module.net), meta)


def inference_rate(predictor: Predictor, batch: int, seconds: float) -> float:
    """Images/s of ``Predictor.probabilities`` on prepared uint8 batches."""
    size = predictor.meta.preprocess.image_size
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size), dtype=np.uint8)
    return _rate(lambda: len(predictor.probabilities(images, batch_size=batch)), seconds)


def latency_ms(predictor: Predictor, image: Path, repeats: int = 50) -> float:
    """Median milliseconds from a JPEG file to its probability."""
    predictor.predict_files([image])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_files([image])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def engines(model: Path, work: Path) -> dict[str, Predictor]:
    """The torch predictor, plus onnxruntime's (float and int8) when the export stack is installed."""
    found = {"torch": Predictor.load(model)}
    try:
        from pneumoscan.export.onnx_export import export_onnx

        calibration = work / "calibration"
        calibration.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        for i in range(32):
            Image.fromarray(synthetic_film(rng, i % 2 == 0, 224)).save(calibration / f"{i}.png")
        onnx_path = export_onnx(model, work / f"{model.stem}.onnx")
        found["onnx"] = Predictor.load(onnx_path, engine="onnx")
        int8_path = export_onnx(model, work / f"{model.stem}-int8.onnx", int8_calibration=calibration)
        found["onnx int8"] = Predictor.load(int8_path, engine="onnx")
    except PneumoscanError as exc:
        print(f"(onnx engines skipped: {exc})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time per throughput measurement")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256], help="inference batch sizes")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        films = {}
        for side in (224, 1024):
            films[side] = work / f"film{side}.jpeg"
            pixels = synthetic_film(np.random.default_rng(0), True, side)
            Image.fromarray(pixels).convert("RGB").save(films[side])
        for name in ("seed", "default"):
            config = recipe(name)
            model = save_untrained(config, work / f"{name}.safetensors")
            row = {"train img/s": train_rate(config, args.seconds)}
            for engine, predictor in engines(model, work).items():
                for batch in args.batch:
                    row[f"infer img/s b{batch} ({engine})"] = inference_rate(predictor, batch, args.seconds)
                for side, film in films.items():
                    row[f"latency ms {side}px ({engine})"] = latency_ms(predictor, film)
            rows[name] = row
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, bN: batch size N; "
        "latency: one JPEG file of that side to its probability (lower is better)"
    )
    header = f"{'measure':<32}{'seed-cnn':>12}{'default':>12}{'default/seed':>14}"
    print(header)
    print("-" * len(header))
    for key in rows["default"]:
        seed, default = rows["seed"].get(key, float("nan")), rows["default"][key]
        print(f"{key:<32}{seed:>12.1f}{default:>12.1f}{default / seed:>13.2f}x")


if __name__ == "__main__":
    main()
