"""Write the Keras fixtures of ``tests/test_keras_import.py`` (run once, with TensorFlow installed).

A small network with the notebook's layers in the notebook's order (five Conv2D-ReLU-[Dropout]-
BatchNormalization-MaxPooling2D blocks, Flatten, Dense-Dropout-Dense-Dropout-Dense(sigmoid)),
narrower than the notebook's so the files stay small, at 160 px so the last feature map is 3x3
(the Flatten order matters), with random weights and random non-trivial BatchNorm statistics.
Writes into ``tests/fixtures/``:

- ``keras-seed.h5``: the model saved in the legacy HDF5 format (``model.save("….h5")``), with
  the activation inside each Conv2D/Dense layer as in the notebook;
- ``keras-seed.keras``: the same weights in the Keras 3 zip format, with separate ReLU layers;
- ``keras-seed-outputs.npz``: ``rgb`` (N, S, S, 3) and ``gray`` (N, S, S) uint8 images and
  Keras's probabilities on them (``rgb_probabilities``; ``gray_probabilities`` for the gray images
  repeated to three channels), inputs scaled to [0, 1] as the notebook's ``rescale=1/255``.

TensorFlow is not a pneumoscan dependency; use a throwaway environment::

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python scripts/make_keras_fixture.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from keras_notebook import notebook_model  # noqa: E402  (the notebook's network, shared with the benchmark)

SIZE = 160
WIDTHS = (4, 8, 8, 8, 16)
DENSE = (8, 4)
OUT = ROOT / "tests" / "fixtures"


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    """Random weights, and BatchNorm statistics far from the initial 0 / 1."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.3, n),
                    rng.normal(0, 0.5, n),
                    rng.uniform(0.05, 2.0, n),
                ]
            )
        elif layer.weights:
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            layer.set_weights(
                [rng.normal(0, 1.5 / np.sqrt(fan_in), kernel.shape), rng.normal(0, 0.1, bias.shape)]
            )


def images(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    """Smooth random uint8 images (they compress well) with different content per channel."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = np.empty((n, SIZE, SIZE, channels))
    for i in range(n):
        for c in range(channels):
            fx, fy, phase = rng.uniform(1, 6, 3)
            out[i, :, :, c] = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy * (xx + 0.3)) + phase)
    return np.round(out * 255).astype(np.uint8)


def main() -> None:
    rng = np.random.default_rng(14)
    keras.utils.set_random_seed(14)
    inline, separate = (notebook_model(SIZE, WIDTHS, DENSE, separate_relu=s) for s in (False, True))
    randomize(inline, rng)
    separate.set_weights(inline.get_weights())
    rgb, gray = images(rng, 4, 3), images(rng, 4, 1)[..., 0]
    probabilities = {
        "rgb_probabilities": inline.predict(rgb / np.float32(255), verbose=0)[:, 0],
        "gray_probabilities": inline.predict(np.repeat(gray[..., None], 3, -1) / np.float32(255), verbose=0)[
            :, 0
        ],
    }
    again = separate.predict(rgb / np.float32(255), verbose=0)[:, 0]
    np.testing.assert_allclose(again, probabilities["rgb_probabilities"], atol=1e-6)
    OUT.mkdir(parents=True, exist_ok=True)
    inline.save(OUT / "keras-seed.h5")
    separate.save(OUT / "keras-seed.keras")
    np.savez_compressed(OUT / "keras-seed-outputs.npz", rgb=rgb, gray=gray, **probabilities)
    print(f"keras {keras.__version__}: wrote {OUT}; probabilities {probabilities}")


if __name__ == "__main__":
    main()
