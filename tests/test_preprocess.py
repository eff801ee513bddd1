"""The preprocessing contract: file -> prepared uint8 -> model input, the same in training and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from pneumoscan.config import Config, PreprocessConfig
from pneumoscan.data.cache import load_cached
from pneumoscan.data.datamodule import XrayDataModule, make_collate
from pneumoscan.data.imageio import DecodedImage, read_image
from pneumoscan.engines.torch_engine import TorchEngine
from pneumoscan.model_file import ModelMeta
from pneumoscan.models import build_model
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import load_prepared, prepare, read_for_model, source_side, to_model_input


def framed(height: int = 100, width: int = 80) -> np.ndarray:
    """Float image: a white border of 20 % on every side around a black centre."""
    pixels = np.ones((height, width), np.float32)
    pixels[height // 5 : height - height // 5, width // 5 : width - width // 5] = 0.0
    return pixels


@pytest.mark.parametrize("size", [32, 64])
def test_prepare_shape_dtype_and_range(size: int) -> None:
    out = prepare(framed(), PreprocessConfig(image_size=size))
    assert out.shape == (size, size)
    assert out.dtype == np.uint8
    assert out.max() == 255 and out.min() == 0  # [0, 1] floats use the whole uint8 range


def test_prepare_accepts_decoded_images_and_arrays_alike() -> None:
    pixels = framed()
    cfg = PreprocessConfig(image_size=32)
    decoded = DecodedImage(pixels, 0.0, "PNG", 8)
    np.testing.assert_array_equal(prepare(decoded, cfg), prepare(pixels, cfg))


def test_crop_fraction_keeps_the_centre() -> None:
    pixels = framed(100, 100)  # white frame 20 px wide around a black 60 x 60 centre

    def white_share(fraction: float) -> float:
        return float((prepare(pixels, PreprocessConfig(image_size=50, crop_fraction=fraction)) > 127).mean())

    assert white_share(1.0) == pytest.approx(1 - 0.6**2, abs=0.03)
    assert white_share(0.8) == pytest.approx(1 - (60 / 80) ** 2, abs=0.03)
    assert white_share(0.6) == 0.0  # exactly the black centre


def test_prepare_without_resize_is_exact() -> None:
    pixels = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = prepare(pixels, PreprocessConfig(image_size=32))
    np.testing.assert_array_equal(out, np.rint(pixels * 255).astype(np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_to_model_input(channels: int) -> None:
    cfg = PreprocessConfig(image_size=32, channels=channels)
    batch = np.stack([np.full((32, 32), 0, np.uint8), np.full((32, 32), 255, np.uint8)])
    batch[0, 3, 4] = 51
    x = to_model_input(batch, cfg)
    assert x.shape == (2, channels, 32, 32)
    assert x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert x[0, :, 3, 4] == pytest.approx([0.2] * channels)
    for c in range(channels):
        np.testing.assert_array_equal(x[:, c], x[:, 0])
    single = to_model_input(batch[0], cfg)  # one (S, S) image becomes a batch of one
    np.testing.assert_array_equal(single, x[:1])


def test_training_rows_and_prediction_input_are_the_same(synthetic_data: Path) -> None:
    """The training cache row of a file, its collated batch, and what the predictor feeds the network."""
    config = tiny_config()
    data = XrayDataModule(synthetic_data / "train", config, progress=False)
    data.setup()
    assert data.manifest is not None
    train_rows = data.manifest[(data.manifest["split"] == "train") & data.manifest["readable"]]
    dataset = data.dataset("train")
    assert len(train_rows) == len(dataset)
    collate = make_collate(config.preprocess)
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config)
    predictor = Predictor(TorchEngine(meta, build_model(config.model, config.preprocess)))
    fed: list[np.ndarray] = []
    real_run = predictor.engine.run

    def spy(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        fed.append(batch.copy())
        return real_run(batch)

    predictor.engine.run = spy  # type: ignore[method-assign]
    for i in (0, 7, len(dataset) - 1):
        path, label = train_rows.iloc[i][["path", "label"]]
        row, row_label = dataset[i]
        assert row_label == label
        np.testing.assert_array_equal(row, load_prepared(path, config.preprocess))
        x, _ = collate([dataset[i]])
        fed.clear()
        predictor.predict_files([path])
        (batch,) = fed
        np.testing.assert_array_equal(x.numpy(), batch)
        assert batch.shape == (1, 1, 64, 64)


def test_cache_row_equals_decode_and_prepare(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = tmp_path / "colour.jpeg"
    Image.fromarray(rgb).save(path, quality=90)
    cfg = Config().preprocess.model_copy(update={"image_size": 48, "crop_fraction": 0.8})
    cached = load_cached([str(path)], cfg, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(cached.pixels[0], prepare(read_image(path), cfg))
    x = to_model_input(np.asarray(cached.pixels), cfg)
    assert x.shape == (1, 3, 48, 48)


@pytest.mark.parametrize(
    ("photometric", "stored"),
    [("MONOCHROME2", lambda p: p), ("MONOCHROME1", lambda p: 255 - p)],
)
def test_dicom_and_png_of_the_same_pixels_give_the_same_model_input(
    tmp_path: Path, photometric, stored
) -> None:
    from dicom_factory import write_dicom

    pixels = np.random.default_rng(3).integers(0, 256, (150, 120), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "film.png")
    dicom = write_dicom(tmp_path / "film.dcm", stored(pixels).astype(np.uint8), photometric=photometric)
    cfg = PreprocessConfig(image_size=64, channels=3, crop_fraction=0.8)
    from_png = to_model_input(load_prepared(tmp_path / "film.png", cfg), cfg)
    from_dicom = to_model_input(load_prepared(dicom, cfg), cfg)
    np.testing.assert_array_equal(from_dicom, from_png)


def test_large_jpegs_are_read_at_reduced_scale_the_same_way_everywhere(tmp_path: Path) -> None:
    """Draft decoding: smaller, never below ``source_side``, the same in cache, predict and explain."""
    from pneumoscan.explain import explain_file

    rng = np.random.default_rng(5)
    film = (rng.random((64, 80)) * 255).astype(np.uint8)
    path = tmp_path / "large.jpeg"
    Image.fromarray(film).resize((640, 512), Image.Resampling.BICUBIC).save(path, quality=90)
    config = tiny_config()
    cfg = config.preprocess.model_copy(update={"image_size": 48, "crop_fraction": 0.8})
    assert source_side(cfg) == 60

    assert read_image(path).pixels.shape == (512, 640)
    reduced = read_for_model(path, cfg)
    assert reduced.pixels.shape == (64, 80)  # 1/8 scale: the smallest that keeps both sides >= 60
    model_input = prepare(reduced, cfg)
    assert not np.array_equal(model_input, prepare(read_image(path), cfg))  # the scale really changed
    cached = load_cached([str(path)], cfg, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(cached.pixels[0], model_input)
    np.testing.assert_array_equal(load_prepared(path, cfg), model_input)

    meta = ModelMeta(model=config.model, preprocess=cfg, config=config)
    predictor = Predictor(TorchEngine(meta, build_model(config.model, cfg)))
    (predicted,) = predictor.predict_files([path])
    expected = predictor.probabilities(model_input[None])[0]
    assert predicted.probability == pytest.approx(expected, abs=1e-6)
    explained = explain_file(predictor, path)
    assert explained.prediction.probability == pytest.approx(expected, abs=1e-6)
    assert explained.overlay.shape[:2] == (512, 640)  # drawn on the full-resolution film


def test_small_jpegs_and_other_formats_are_read_whole(tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=48, crop_fraction=0.8)
    film = (np.random.default_rng(6).random((100, 120)) * 255).astype(np.uint8)
    Image.fromarray(film).save(tmp_path / "small.jpeg", quality=90)  # 1/2 scale would be under 60
    Image.fromarray(film).resize((480, 400)).save(tmp_path / "large.png")
    assert read_for_model(tmp_path / "small.jpeg", cfg).pixels.shape == (100, 120)
    assert read_for_model(tmp_path / "large.png", cfg).pixels.shape == (400, 480)
