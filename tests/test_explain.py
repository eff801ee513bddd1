"""Heat maps: they point at the evidence, fit every architecture, and reach files and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.config import ExplainConfig
from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.errors import PneumoscanError
from pneumoscan.explain import (
    MAX_OVERLAY_SIDE,
    explain_files,
    explain_image,
    heat_maps,
    overlay_png,
    require_torch_engine,
)
from pneumoscan.model_file import ModelMeta, read_model, save_model
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import prepare, to_model_input

SIDE = 64


BLOB_SIGMA = 0.06 * SIDE


def blob_film(rng: np.random.Generator, pneumonia: bool) -> np.ndarray:
    """Noise; PNEUMONIA adds a bright blob somewhere in the upper-left quadrant."""
    return boxed_blob_film(rng, pneumonia)[0]


def boxed_blob_film(rng: np.random.Generator, pneumonia: bool) -> tuple[np.ndarray, tuple[float, ...]]:
    """:func:`blob_film` and the blob's box ``(x, y, width, height)``: its centre +- 2 sigma."""
    image = 0.35 + rng.normal(0, 0.08, (SIDE, SIDE))
    box: tuple[float, ...] = ()
    if pneumonia:
        yy, xx = np.mgrid[0:SIDE, 0:SIDE]
        cy, cx = rng.uniform(0.12, 0.38, 2) * SIDE
        image += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * BLOB_SIGMA**2))
        box = (cx + 0.5 - 2 * BLOB_SIGMA, cy + 0.5 - 2 * BLOB_SIGMA, 4 * BLOB_SIGMA, 4 * BLOB_SIGMA)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), box


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


VARIANTS = [
    ExplainConfig(),
    ExplainConfig(method="gradcam++"),
    ExplainConfig(method="layercam", layers=[-2]),
    ExplainConfig(layers=[-2, -1], combine="product"),
    ExplainConfig(method="layercam", layers=[-2, -1], smoothing="shift+flip"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.method}{v.layers}{v.combine}-{v.smoothing}")
def test_every_map_variant_peaks_in_the_blob(blob_model: Path, variant: ExplainConfig) -> None:
    predictor = Predictor.load(blob_model)
    predictor.meta.explain = variant
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(6):
        film, (x, y, width, height) = boxed_blob_film(rng, True)
        explanation = explain_image(predictor, decoded(film / 255.0))
        peak_x, peak_y = explanation.peak_on_film()
        hits += x <= peak_x < x + width and y <= peak_y < y + height
    assert hits >= 5


def test_evaluate_boxes_finds_the_blob(
    blob_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Films at twice the model's side, boxes in the films' own pixels: the maps point into them."""
    rng = np.random.default_rng(7)
    rows = ["path,x,y,width,height"]
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(8):
            film, box = boxed_blob_film(rng, label == "PNEUMONIA")
            Image.fromarray(film).resize((2 * SIDE, 2 * SIDE), Image.Resampling.BILINEAR).save(
                tmp_path / "data" / label / f"f{i}.png"
            )
            if box:
                rows.append(f"data/{label}/f{i}.png," + ",".join(f"{2 * value:.2f}" for value in box))
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["evaluate", str(blob_model), str(tmp_path / "data"), "--boxes", str(tmp_path / "boxes.csv")]
    assert main([*args, "--quiet", "--out", str(out), "--report"]) == 0
    assert "pointing game: map peak inside a box on" in capsys.readouterr().out
    found = json.loads((out / "metrics.json").read_text())["localisation"]
    chance = (4 * BLOB_SIGMA) ** 2 / SIDE**2
    assert found["films"] == 8 and found["chance_hit_rate"] == pytest.approx(chance, rel=0.1)
    assert found["hit_rate"] >= 0.75 and found["mass_in_boxes"] > 2 * chance
    page = (out / "report.html").read_text()
    assert "id='localisation'" in page and page.count("peak in a box") >= 2


def test_the_model_file_says_which_map_every_path_shows(blob_model: Path, tmp_path: Path) -> None:
    """explain_image (behind overlays, the report, the web API and the DICOM capture) uses the stored map."""
    meta, tensors = read_model(blob_model)
    layercam = ExplainConfig(method="layercam", layers=[-2])
    stored = save_model(
        tmp_path / "layercam.safetensors", tensors, meta.model_copy(update={"explain": layercam})
    )
    default, chosen = Predictor.load(blob_model), Predictor.load(stored)
    assert default.meta.explain == ExplainConfig() and chosen.meta.explain == layercam
    film = decoded(blob_film(np.random.default_rng(3), True) / 255.0)
    cfg = chosen.meta.preprocess
    batch = to_model_input(prepare(film, cfg), cfg)
    explanation = explain_image(chosen, film)
    expected = (
        heat_maps(require_torch_engine(chosen), batch, layercam)[0] * explanation.prediction.probability
    )
    assert np.allclose(explanation.heatmap, expected, atol=1e-6)
    assert not np.allclose(explain_image(default, film).heatmap, explanation.heatmap, atol=1e-3)


def test_stages_beyond_the_network_are_refused(blob_model: Path) -> None:
    predictor = Predictor.load(blob_model)
    predictor.meta.explain = ExplainConfig(layers=[-3, -1])
    with pytest.raises(
        PneumoscanError, match=r"explain.layers \[-3, -1\]: this PneumoResNet has 2 feature stages"
    ):
        explain_image(predictor, decoded(blob_film(np.random.default_rng(0), True) / 255.0))
    with pytest.raises(PneumoscanError, match=r"explain\.layers: Value error, distinct negative"):
        tiny_config().with_overrides(["explain.layers=[0]"])


def test_overlays_keep_the_films_resolution(blob_model: Path, tmp_path: Path) -> None:
    """predict --explain draws on the film as it is (up to 1024 px a side), not on the model's input."""
    rng = np.random.default_rng(4)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(blob_film(rng, True)).resize((150, 200)).save(small)
    Image.fromarray(blob_film(rng, True)).resize((1500, 1200)).save(large)
    results = explain_files(Predictor.load(blob_model), [small, large], tmp_path / "maps")
    sizes = [Image.open(str(result.heatmap_path)).size for result in results]
    assert sizes[0][1] == 200 and sizes[0][0] > 150  # the film, then its colour bar
    assert sizes[1][1] == round(1200 * MAX_OVERLAY_SIDE / 1500) and sizes[1][0] > MAX_OVERLAY_SIDE
