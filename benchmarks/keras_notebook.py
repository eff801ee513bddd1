"""The notebook's CNN in Keras, and a speed worker for ``benchmarks/speed.py --vs-keras``.

Needs TensorFlow, which is not a pneumoscan dependency: run it with the Python of a separate
environment (``python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu``).
As a worker it reads commands from stdin, one per line, and answers each with one line:

    train BATCH SECONDS   -> images/s of ``train_on_batch`` (Adam, binary cross-entropy)
    infer BATCH SECONDS   -> images/s of ``predict_on_batch``
    version               -> TensorFlow and Keras versions and thread settings

``scripts/make_keras_fixture.py`` imports :func:`notebook_model` to write the test fixtures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np

WIDTHS = (32, 64, 64, 128, 256)
DROPOUTS = (0.0, 0.1, 0.0, 0.2, 0.2)
DENSE = (256, 128)


def notebook_model(
    size: int = 224,
    widths: Sequence[int] = WIDTHS,
    dense: Sequence[int] = DENSE,
    separate_relu: bool = False,
) -> keras.Model:
    """The notebook's layers: five Conv2D-ReLU-[Dropout]-BatchNormalization-MaxPooling2D blocks,
    Flatten, Dense-Dropout-Dense-Dropout-Dense(sigmoid); ``separate_relu`` puts each ReLU in a layer
    of its own instead of the Conv2D's ``activation``."""
    act = None if separate_relu else "relu"
    layers: list = [keras.Input((size, size, 3))]
    for width, dropout in zip(widths, DROPOUTS, strict=True):
        layers.append(keras.layers.Conv2D(width, (3, 3), activation=act))
        if separate_relu:
            layers.append(keras.layers.ReLU())
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
        layers += [keras.layers.BatchNormalization(), keras.layers.MaxPooling2D((2, 2))]
    layers.append(keras.layers.Flatten())
    for units in dense:
        layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(0.2)]
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    return keras.Sequential(layers)


def _rate(step: Callable[[], int], seconds: float) -> float:
    step()  # warm-up (traces the function on first use)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def main() -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = notebook_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "version":
            threading = tf.config.threading
            threads = (
                threading.get_intra_op_parallelism_threads(),
                threading.get_inter_op_parallelism_threads(),
            )
            print(f"tensorflow {tf.__version__}, keras {keras.__version__}, intra/inter-op threads {threads}")
        else:
            batch, seconds = int(args[0]), float(args[1])
            x = rng.random((batch, 224, 224, 3), dtype=np.float32)
            y = rng.integers(0, 2, (batch, 1)).astype(np.float32)

            def train(x: np.ndarray = x, y: np.ndarray = y) -> int:
                model.train_on_batch(x, y)
                return len(x)

            def infer(x: np.ndarray = x) -> int:
                return len(model.predict_on_batch(x))

            print(f"{_rate(train if command == 'train' else infer, seconds):.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
