"""Shared fixtures: a synthetic data set in the Kaggle layout and a model trained on it (once per session)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# One OpenMP thread per process: the suite runs many small trainings on a 2-core machine, where
# torch's spinning worker threads cost far more than they give (measured: 243 s -> 70 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from pneumoscan.config import Config, recipe
from pneumoscan.synthetic import make_synthetic_dataset


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the decoded-image cache of the tests out of the user's ~/.cache."""
    os.environ["PNEUMOSCAN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/{train,test}/{NORMAL,PNEUMONIA}``: 80 training and 20 test images per class, 96 px."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), {"train": 80, "test": 20})


def tiny_config(architecture: str = "pneumo-resnet") -> Config:
    """The default recipe shrunk so that a training run takes seconds."""
    return recipe("default").with_overrides(
        [
            f"model.architecture={architecture}",
            # the 4-stage network of stride 2 throughout: at 64 px the default's 8 x 8 last stage leaves this
            # tiny run's gate too narrow for the other synthetic sites the tests use
            'model.options={"stem_stride": 4, "widths": [24, 48, 96, 192]}'
            if architecture == "pneumo-resnet"
            else "model.options={}",
            "preprocess.image_size=64",
            "preprocess.crop_fraction=1.0",
            "augment.framing=0",  # synthetic evidence reaches the edges; test_augment trains with framing
            "train.max_epochs=8",
            "train.batch_size=32",
            "train.lr=0.003",
            "data.val_fraction=0.2",
            "gate.generated_negatives=180",
            'train.precision="32"',  # bf16 autocast (auto on AVX512-BF16 CPUs) ruins this tiny run
        ]
    )


@pytest.fixture(scope="session")
def trained_model(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``pneumo-resnet`` model file trained on :func:`synthetic_data` (shared by the tests)."""
    from pneumoscan.training.fit import train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            synthetic_data / "train", tmp_path_factory.mktemp("run") / "run", tiny_config(), progress=False
        )
    guessed = [str(w.message) for w in caught if "infer the `batch_size`" in str(w.message)]
    assert not guessed, f"a metric is logged without its batch size: {guessed[0]}"
    assert result.model_path is not None
    return result.model_path


RELABELLED = ("CLEAR", "PNEU")  # output class names no path may take from anywhere but the model file


@pytest.fixture(scope="session")
def relabelled_model(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`trained_model` with the output classes :data:`RELABELLED` in its model file."""
    from pneumoscan.model_file import read_model, save_model

    meta, tensors = read_model(trained_model)
    target = tmp_path_factory.mktemp("relabelled") / "relabelled.safetensors"
    return save_model(target, tensors, meta.model_copy(update={"class_names": RELABELLED}))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 192 KiB tmpfs: a real file system that runs out of space (needs the right to mount)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def full_disk(small_disk: Path) -> Path:
    """:func:`small_disk` filled up."""
    with contextlib.suppress(OSError), open(small_disk / "filler", "wb") as filler:
        while True:
            filler.write(bytes(4096))
            filler.flush()
    return small_disk


@contextmanager
def served_on_loopback(app: Any, header_timeout: float = 10.0) -> Iterator[int]:
    """``app`` served as ``pneumoscan serve`` does, in a thread on 127.0.0.1 at a free port (yielded),
    stopped afterwards."""
    import uvicorn

    from pneumoscan.serve.protocol import server_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, header_timeout=header_timeout, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
