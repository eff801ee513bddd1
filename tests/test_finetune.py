"""``train --init-from MODEL``: fine-tuning starts from its weights; incompatible models are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscan.cli import main
from pneumoscan.model_file import read_model
from pneumoscan.models import build_model


def max_parameter_change(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> float:
    """Largest change of any trained weight (BatchNorm running statistics are not weights)."""
    names = [n for n in before if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert names and set(before) == set(after)
    return max(float(np.abs(after[n] - before[n]).max()) for n in names)


def test_init_from_starts_from_the_model_weights(
    trained_model: Path, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source_meta, source = read_model(trained_model)
    run_dir = tmp_path / "finetuned"
    args = ["train", "--data", str(synthetic_data / "train"), "--out", str(run_dir), "--init-from"]
    # a learning rate so small that one epoch cannot move the weights: they must come from the file
    args += [str(trained_model), "--epochs", "1", "--lr", "1e-9", "--no-augment", "--quiet"]
    assert main(args) == 0, capfd.readouterr().err

    meta, tuned = read_model(run_dir / "model.safetensors")
    assert meta.config is not None and source_meta.config is not None
    assert meta.model == source_meta.model and meta.preprocess == source_meta.preprocess
    assert meta.config.train.lr == 1e-9 and meta.config.train.max_epochs == 1
    assert max_parameter_change(source, tuned) < 1e-5

    torch.manual_seed(0)
    fresh = {k: v.numpy() for k, v in build_model(meta.model, meta.preprocess).state_dict().items()}
    assert max_parameter_change(source, fresh) > 1e-3  # a new initialisation is far from the source


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--recipe", "seed"], "seed-cnn"),
        (["--set", "preprocess.image_size=96"], "96 px"),
        (["--set", "preprocess.channels=3"], "3 channels"),
        (["--set", 'model.options={"widths": [8, 16]}'], "other widths"),
    ],
)
def test_init_from_refuses_an_incompatible_model(
    flags: list[str],
    reason: str,
    trained_model: Path,
    synthetic_data: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(synthetic_data / "train"), "--out", str(run_dir)]
    code = main([*args, "--init-from", str(trained_model), *flags, "--quiet"])
    err = capfd.readouterr().err
    assert code == 2, reason
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pneumoscan: error: {trained_model}: was trained as pneumo-resnet on 64px")
    assert not run_dir.exists()  # refused before the run directory is made or any image decoded


def test_init_from_a_file_that_is_not_a_model(
    synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 not a model")
    args = ["train", "--data", str(synthetic_data / "train"), "--out", str(tmp_path / "run")]
    for extra in ([], ["--recipe", "default"]):  # the model's own config, or a recipe's
        assert main([*args, "--init-from", str(junk), *extra, "--quiet"]) == 2
        err = capfd.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(junk) in err and "Traceback" not in err
