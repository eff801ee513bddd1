"""Grad-CAM heat maps: they point at the evidence, fit every architecture, and reach files and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.explain import MAX_OVERLAY_SIDE, explain_files, explain_image, overlay_png
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor

SIDE = 64


def blob_film(rng: np.random.Generator, pneumonia: bool) -> np.ndarray:
    """Noise; PNEUMONIA adds a bright blob somewhere in the upper-left quadrant."""
    image = 0.35 + rng.normal(0, 0.08, (SIDE, SIDE))
    if pneumonia:
        yy, xx = np.mgrid[0:SIDE, 0:SIDE]
        cy, cx = rng.uniform(0.12, 0.38, 2) * SIDE
        image += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.06 * SIDE) ** 2))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ``pneumo-resnet`` (two stages, so the heat map is 16x16) trained on :func:`blob_film`."""
    from pneumoscan.training.fit import train

    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir()
        for i in range(48):
            Image.fromarray(blob_film(rng, label == "PNEUMONIA")).save(root / label / f"film{i}.png")
    config = tiny_config().with_overrides(
        [
            'model.options={"widths": [16, 32]}',
            "preprocess.normalization=none",  # z-scoring would let the blob shift the whole image
            "augment.enabled=false",
            "train.batch_size=8",
            "model.gate=false",  # the gate would have to tell these noise films from generated noise
        ]
    )
    result = train(root, tmp_path_factory.mktemp("blob-run") / "run", config, progress=False)
    assert result.model_path is not None
    return result.model_path


def untrained_model(tmp_path: Path, architecture: str, overrides: list[str]) -> Path:
    config = tiny_config(architecture).with_overrides(overrides)
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config)
    net = build_model(config.model, config.preprocess)
    return save_model(tmp_path / f"{architecture}.safetensors", network_tensors(net), meta)


def decoded(pixels: np.ndarray) -> DecodedImage:
    return DecodedImage(pixels.astype(np.float32), 0.0, "PNG", 8)


def test_heat_map_points_at_the_evidence(blob_model: Path) -> None:
    predictor = Predictor.load(blob_model)
    rng = np.random.default_rng(1)
    for _ in range(4):
        explanation = explain_image(predictor, decoded(blob_film(rng, True) / 255.0))
        heat = explanation.heatmap
        half = SIDE // 2
        assert explanation.prediction.label == "PNEUMONIA"
        assert heat[:half, :half].sum() > 0.6 * heat.sum()
        row, col = np.unravel_index(int(heat.argmax()), heat.shape)
        assert row < half and col < half


def test_confident_normal_film_gives_a_calm_map(blob_model: Path) -> None:
    """The map's peak is the probability: calm (all blue) for a confident NORMAL, red for PNEUMONIA."""
    predictor = Predictor.load(blob_model)
    rng = np.random.default_rng(5)
    for _ in range(3):
        normal = explain_image(predictor, decoded(blob_film(rng, False) / 255.0))
        sick = explain_image(predictor, decoded(blob_film(rng, True) / 255.0))
        assert normal.prediction.probability is not None and normal.prediction.probability < 0.05
        assert sick.prediction.probability is not None and sick.prediction.probability > 0.95
        assert normal.heatmap.max() < 0.05
        assert normal.heatmap.max() == pytest.approx(normal.prediction.probability, abs=1e-4)
        assert sick.heatmap.max() > 0.9
        # red in the overlay (the jet colours of values above ~0.6) only on the pneumonia film
        assert not (normal.overlay[..., 0].astype(int) - normal.overlay[..., 2] > 60).any()
        assert (sick.overlay[..., 0].astype(int) - sick.overlay[..., 2] > 60).any()


@pytest.mark.parametrize(
    ("architecture", "overrides"),
    [
        ("pneumo-resnet", ["preprocess.crop_fraction=0.8"]),
        (
            "seed-cnn",
            [
                "preprocess.image_size=96",
                "preprocess.crop_fraction=0.8",
                "preprocess.channels=3",
            ],
        ),
    ],
)
def test_heat_map_shape_and_overlay(tmp_path: Path, architecture: str, overrides: list[str]) -> None:
    predictor = Predictor.load(untrained_model(tmp_path, architecture, overrides))
    size = predictor.meta.preprocess.image_size
    rng = np.random.default_rng(0)
    explanation = explain_image(predictor, decoded(rng.random((100, 150))), "x.png")

    assert explanation.heatmap.shape == (size, size)
    assert explanation.heatmap.dtype == np.float32
    assert explanation.heatmap.min() >= 0.0 and explanation.heatmap.max() <= 1.0
    overlay = explanation.overlay
    assert overlay.shape == (100, 150, 3) and overlay.dtype == np.uint8
    gray = (overlay[..., 0] == overlay[..., 1]) & (overlay[..., 1] == overlay[..., 2])
    assert gray[:10].all() and gray[:, :15].all()  # outside the 80 % centre crop: no colour
    assert not gray[10:90, 15:135].any()  # inside: tinted everywhere
    assert explanation.prediction.path == "x.png" and explanation.prediction.probability is not None


def test_large_image_overlay_is_downscaled(tmp_path: Path) -> None:
    predictor = Predictor.load(untrained_model(tmp_path, "pneumo-resnet", []))
    ramp = np.tile(np.linspace(0, 1, 2400), (1200, 1))
    explanation = explain_image(predictor, decoded(ramp))
    assert explanation.overlay.shape == (MAX_OVERLAY_SIDE // 2, MAX_OVERLAY_SIDE, 3)
    png = Image.open(io.BytesIO(overlay_png(explanation)))
    width, height = png.size
    assert height == MAX_OVERLAY_SIDE // 2 and MAX_OVERLAY_SIDE < width < MAX_OVERLAY_SIDE * 1.2


def test_overlay_png_has_a_colour_bar(tmp_path: Path) -> None:
    """A panel right of the overlay: red at the top (1.0), dark blue at the bottom (0.0), white labels."""
    predictor = Predictor.load(untrained_model(tmp_path, "pneumo-resnet", []))
    explanation = explain_image(predictor, decoded(np.full((200, 200), 0.5)))
    picture = np.asarray(Image.open(io.BytesIO(overlay_png(explanation))).convert("RGB")).astype(int)
    assert picture.shape[0] == 200 and picture.shape[1] > 200
    panel = picture[:, 200:]
    red = (panel[..., 0] > 100) & (panel[..., 1] < 60) & (panel[..., 2] < 60)
    blue = (panel[..., 2] > 100) & (panel[..., 0] < 60) & (panel[..., 1] < 60)
    red_rows, blue_rows = np.nonzero(red.any(axis=1))[0], np.nonzero(blue.any(axis=1))[0]
    assert red_rows.size and blue_rows.size and red_rows.max() < blue_rows.min()
    assert (panel.min(axis=2) > 200).any()  # the white tick labels


def test_onnx_engine_is_refused(tmp_path: Path) -> None:
    torch_predictor = Predictor.load(untrained_model(tmp_path, "pneumo-resnet", []))

    class FakeOnnx:
        name = "onnx"
        meta = torch_predictor.meta

        def logits(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros(len(batch))

    with pytest.raises(PneumoscanError, match="heat maps need the torch engine"):
        explain_files(Predictor(FakeOnnx()), [], tmp_path / "out")


def film_files(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(count):
        path = folder / f"film{i}.png"
        Image.fromarray(blob_film(rng, i % 2 == 0)).save(path)
        paths.append(str(path))
    return paths


def test_explain_files_writes_pngs_and_keeps_errors(blob_model: Path, tmp_path: Path) -> None:
    first = film_files(tmp_path / "a", 2)
    again = film_files(tmp_path / "b", 1)  # b/film0.png: the same stem as a/film0.png
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG not really")
    paths = [first[0], str(corrupt), first[1], again[0]]

    results = explain_files(Predictor.load(blob_model), paths, tmp_path / "maps")

    assert [r.path for r in results] == paths
    assert results[1].error and "broken.png" in results[1].error and results[1].heatmap_path is None
    written = [Path(r.heatmap_path) for r in results if r.heatmap_path]
    assert [p.name for p in written] == ["film0_heatmap.png", "film1_heatmap.png", "film0-2_heatmap.png"]
    for path in written:
        width, height = Image.open(path).size
        assert height == SIDE and width > SIDE  # the film, then the colour bar
    assert results[0].label == "PNEUMONIA" and results[2].label == "NORMAL"


def test_cli_predict_explain(blob_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = film_files(tmp_path / "films", 2)
    out = tmp_path / "maps"
    assert main(["predict", str(blob_model), *paths, "--explain", str(out), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(row["heatmap_path"]).name for row in rows] == ["film0_heatmap.png", "film1_heatmap.png"]
    assert all(Path(row["heatmap_path"]).parent == out for row in rows)
    assert read_image(out / "film0_heatmap.png").pixels.shape[0] == SIDE
