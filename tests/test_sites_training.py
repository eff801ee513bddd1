"""Training on two synthetic sites through the CLI: per-site metrics, site-balanced draws, monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from pneumoscan.cli import main
from pneumoscan.config import Config
from pneumoscan.data.datamodule import XrayDataModule
from pneumoscan.evaluation.metrics import MIN_FILMS
from pneumoscan.synthetic import make_synthetic_csv_site, make_synthetic_dataset

SITES = ("kermany", "nih")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A big Kaggle-layout site and a small labels-CSV site with a darker, flatter look."""
    base = tmp_path_factory.mktemp("two-sites")
    folder = make_synthetic_dataset(base / "kermany", {"train": 60, "test": 10}, size=48)
    csv = make_synthetic_csv_site(base / "nih", per_class=20, size=48)
    return [str(folder), str(csv)]


@pytest.fixture(scope="module")
def run(sources: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("run")
    config = base / "tiny.json"
    config.write_text(tiny_config().to_json())
    run_dir = base / "run"
    args = [
        "train",
        "--data",
        sources[0],
        "--data",
        sources[1],
        "--out",
        str(run_dir),
        "--config",
        str(config),
    ]
    args += [
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--quiet",
        "--set",
        'model.options={"widths": [16, 32, 64]}',
    ]
    args += ["--set", "data.site_balance=1", "--set", "train.monitor=val_auc_worst"]
    assert main(args) == 0
    return run_dir


def test_per_site_validation_metrics_in_history(run: Path) -> None:
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 3
    for site in SITES:
        assert history[[f"val_auc_{site}", f"val_loss_{site}"]].notna().all().all()
    aucs = history[[f"val_auc_{site}" for site in SITES]]
    assert history["val_auc_worst"].tolist() == pytest.approx(aucs.min(axis=1).tolist())
    assert history["val_auc_mean"].tolist() == pytest.approx(aucs.mean(axis=1).tolist())
    logged = pd.read_csv(run / "logs" / "metrics.csv")
    assert "val_auc_worst" in logged and "val_auc_nih" in logged


def test_per_site_metrics_match_the_final_model(run: Path) -> None:
    """The last epoch's logged per-site AUCs are those of the saved model on each site's validation films."""
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sites"] == list(SITES)
    last = pd.read_csv(run / "history.csv").iloc[-1]
    for site in SITES:
        measured = summary["validation_per_site"][site]
        assert measured["images"] > 0
        if measured["images"] < MIN_FILMS:  # too few for a reported ROC-AUC: the headline's rule
            assert measured["roc_auc"] is None
            continue
        assert last[f"val_auc_{site}"] == pytest.approx(measured["roc_auc"], abs=1e-4)
    assert sum(summary["validation_per_site"][s]["images"] for s in SITES) == summary["val_images"]


def test_best_checkpoint_follows_the_monitor(run: Path) -> None:
    history = pd.read_csv(run / "history.csv")
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    states = [state for key, state in best["callbacks"].items() if "'monitor': 'val_auc_worst'" in key]
    assert len(states) == 1 and "'mode': 'max'" in next(k for k in best["callbacks"] if "val_auc_worst" in k)
    assert float(states[0]["best_model_score"]) == pytest.approx(history["val_auc_worst"].max())
    assert best["epoch"] == int(history["val_auc_worst"].idxmax())


def test_sources_and_settings_are_recorded(run: Path, sources: list[str]) -> None:
    config = Config.load(run / "config.json")
    assert config.data.sources == sources
    assert config.data.site_balance == 1 and config.train.monitor == "val_auc_worst"


def test_site_balanced_loader_draws_both_sites_alike(sources: list[str]) -> None:
    config = tiny_config().with_overrides(["data.site_balance=1", "train.batch_size=50"])
    data = XrayDataModule(sources, config, progress=False)
    data.setup()
    train = data.dataset("train")
    assert data.sites == list(SITES) and (train.sites == 0).sum() > 2 * (train.sites == 1).sum()
    torch.manual_seed(0)
    sampler = data.train_dataloader().sampler
    indices = torch.tensor([index for _ in range(20) for index in sampler])
    share = float((torch.from_numpy(train.sites)[indices] == 1).float().mean())
    assert share == pytest.approx(0.5, abs=0.05)
    val = data.dataset("val")
    assert set(val.sites.tolist()) == {0, 1} and len(val[0]) == 3  # validation items carry their site


def test_evaluate_and_inspect_take_several_sources(
    run: Path, sources: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    out = run.parent / "eval"
    assert (
        main(
            [
                "evaluate",
                str(run / "model.safetensors"),
                sources[0],
                "--data",
                sources[1],
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions.groupby("site")["split"].unique().map(list).to_dict() == {
        "kermany": ["test"],
        "nih": ["labels"],
    }
    manifest = run.parent / "manifest.csv"
    capfd.readouterr()
    assert (
        main(["inspect", "--data", sources[0], "--data", sources[1], "--quiet", "--manifest", str(manifest)])
        == 0
    )
    table = capfd.readouterr().out.split("\n\n")[0]
    assert table.splitlines()[1].split()[:2] == ["site", "split"]  # counts per site x split x class
    assert "kermany" in table and "nih" in table
    counts = pd.read_csv(manifest).groupby(["site", "split", "class_name"]).size()
    assert counts.index.tolist() == [
        (site, split, name)
        for site, splits in (("kermany", ("test", "train", "val")), ("nih", ("train", "val")))
        for split in splits
        for name in ("NORMAL", "PNEUMONIA")
    ]


def test_train_without_data_is_one_line_exit_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--out", str(tmp_path / "run"), "--quiet"])
    err = capfd.readouterr().err
    assert code == 2 and err.startswith("pneumoscan: error: no training data: pass --data")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
