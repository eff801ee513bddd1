"""Speed of the notebook's ``seed-cnn`` against the default model, measured side by side in one run.

For each model: training images/s (optimiser steps on random batches through the LightningModule's
network, loss and augmentation), batch inference images/s (torch engine, and onnxruntime in float
and in int8 when the export stack is installed; int8 calibrated on synthetic films), and
single-image latency from a JPEG file to a probability (median of repeated
``Predictor.predict_files``).  Models are untrained networks of the two recipes (speed does not
depend on the weights).  Prints a table and the default/seed ratios.

``--vs-keras`` instead measures ``seed-cnn`` against the notebook's own Keras network (224x224x3,
the same layers) in one run: training steps at batch 32 and inference at batch 64, pneumoscan
(torch, and onnxruntime for inference) and TensorFlow/Keras alternating, ``--repeats`` times.
TensorFlow runs in a worker process (``benchmarks/keras_notebook.py``) started with the Python of
its own environment (``--keras-python``), so it never becomes a pneumoscan dependency.

    python benchmarks/speed.py [--seconds 8] [--batch 64 256]
    python benchmarks/speed.py --vs-keras --keras-python /tmp/tfvenv/bin/python [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pneumoscan.augment import training_view
from pneumoscan.config import Config, recipe
from pneumoscan.engines.torch_engine import TorchEngine, network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.hardware import use_bf16
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


def train_rate(config: Config, seconds: float, augment: bool = True, bf16: bool = False) -> float:
    """Images/s of full training steps (augmentation, forward, backward, optimiser) on random batches;
    ``bf16``: under bf16 autocast, as ``train`` runs where the CPU has native bf16."""
    if not augment:
        config = config.with_overrides(["augment.enabled=false"])
    module = XrayClassifier(config.model_dump())
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    size, batch = training_view(config.preprocess, config.augment).image_size, config.train.batch_size
    x = torch.rand(batch, config.preprocess.channels, size, size)  # as cached: wider with framing
    y = torch.randint(0, 2, (batch,)).float()

    def step() -> int:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
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


def engines(model: Path, work: Path, int8: bool = True) -> dict[str, Predictor]:
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
        if not int8:
            return found
        int8_path = export_onnx(model, work / f"{model.stem}-int8.onnx", int8_calibration=calibration)
        found["onnx int8"] = Predictor.load(int8_path, engine="onnx")
    except PneumoscanError as exc:
        print(f"(onnx engines skipped: {exc})")
    return found


class KerasWorker:
    """The Keras side of ``--vs-keras``: ``benchmarks/keras_notebook.py`` in another Python."""

    def __init__(self, python: str) -> None:
        script = Path(__file__).with_name("keras_notebook.py")
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # TensorFlow's own defaults
        self.process = subprocess.Popen(
            [python, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer:
            raise SystemExit(
                f"the Keras worker stopped (exit {self.process.wait()}); is TensorFlow installed there?"
            )
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def vs_keras(python: str, seconds: float, repeats: int) -> None:
    """Print seed-cnn against the notebook's Keras network, measured alternately ``repeats`` times."""
    config = recipe("seed")
    keras = KerasWorker(python)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {keras.ask('version')}")
    bf16 = use_bf16("auto")
    train, train_bf16, augmented, infer_keras = [], [], [], []
    infer: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = save_untrained(config, Path(tmp) / "seed.safetensors")
        predictors = {"torch fp32": Predictor(TorchEngine.load(model, precision="32"))}
        if bf16:
            predictors["torch bf16"] = Predictor(TorchEngine.load(model, precision="bf16"))
        predictors.update((k, v) for k, v in engines(model, Path(tmp), int8=False).items() if k != "torch")
        train_keras = []
        for _ in range(repeats):
            train.append(train_rate(config, seconds, augment=False))
            train_keras.append(float(keras.ask(f"train 32 {seconds}")))
            if bf16:
                train_bf16.append(train_rate(config, seconds, augment=False, bf16=True))
            augmented.append(train_rate(config, seconds, bf16=bf16))
            for engine, predictor in predictors.items():
                infer.setdefault(engine, []).append(inference_rate(predictor, 64, seconds))
            infer_keras.append(float(keras.ask(f"infer 64 {seconds}")))
    keras.close()
    rows = [("train img/s b32, network step, fp32", train, train_keras)]
    if bf16:
        rows.append(("train img/s b32, network step, bf16", train_bf16, train_keras))
    rows += [(f"infer img/s b64, {engine}", rates, infer_keras) for engine, rates in infer.items()]
    rows.append((f"train img/s b32, augmented, {'bf16' if bf16 else 'fp32'}", augmented, None))
    header = f"{'measure':<38}{'pneumoscan':>11}{'keras':>8}{'ratio':>8}   pneumoscan runs | keras runs"
    print(f"{header}\n{'-' * len(header)}")
    for measure, ours, theirs in rows:
        ours_text = " ".join(f"{v:.1f}" for v in ours)
        if theirs is None:
            print(f"{measure:<38}{statistics.median(ours):>11.1f}{'-':>8}{'':>8}   {ours_text}")
            continue
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(
            f"{measure:<38}{statistics.median(ours):>11.1f}{statistics.median(theirs):>8.1f}{ratio:>7.2f}x   "
            f"{ours_text} | {' '.join(f'{v:.1f}' for v in theirs)}"
        )
    print(
        "medians of the runs; ratio: pneumoscan / keras (higher is faster); keras: fp32; "
        "bf16: pneumoscan's default where the CPU has native bf16"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time per throughput measurement")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256], help="inference batch sizes")
    parser.add_argument(
        "--vs-keras", action="store_true", help="seed-cnn against the notebook's Keras network"
    )
    parser.add_argument("--keras-python", default="python3", help="a Python with TensorFlow (for --vs-keras)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (for --vs-keras)")
    parser.add_argument(
        "--torch-threads", type=int, help="torch.set_num_threads (default: torch's, all cores)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.vs_keras:
        vs_keras(args.keras_python, args.seconds, args.repeats)
        return
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
