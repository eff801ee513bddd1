"""``evaluate --boxes``: boxes mapped like the film, an exact chance baseline, wrong box CSVs in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.config import PreprocessConfig
from pneumoscan.engines.torch_engine import network_tensors
from pneumoscan.evaluation.localisation import box_coverage, wilson_interval
from pneumoscan.model_file import ModelMeta, save_model
from pneumoscan.models import build_model
from pneumoscan.preprocess import model_view, prepare


def test_boxes_land_where_prepare_puts_their_pixels() -> None:
    """A bright rectangle on a non-square film ends up in the model input exactly where the box maps."""
    cfg = PreprocessConfig(image_size=64, channels=1, crop_fraction=0.8)
    film = np.zeros((150, 200), np.float32)
    box = (60.0, 40.0, 50.0, 30.0)  # x, y, width, height
    film[40:70, 60:110] = 1.0
    view = model_view(film.shape, cfg)
    x0, y0, x1, y1 = view.box_to_model(*box)
    bright = np.argwhere(prepare(film, cfg) > 127)
    (top, left), (bottom, right) = bright.min(axis=0), bright.max(axis=0) + 1
    assert (left, top, right, bottom) == pytest.approx((x0, y0, x1, y1), abs=1.0)
    assert view.point_to_film(x0, y0) == pytest.approx(box[:2])


def test_a_film_decoded_at_reduced_scale_maps_boxes_through_its_own_crop() -> None:
    cfg = PreprocessConfig(image_size=64, channels=1, crop_fraction=0.8)
    full, reduced = model_view((300, 400), cfg), model_view((300, 400), cfg, (150, 200))
    assert (reduced.top, reduced.left, reduced.height, reduced.width) == (30, 40, 240, 320)
    assert reduced.box_to_model(40, 30, 320, 240) == (0, 0, 64, 64)
    assert full.box_to_model(40, 30, 320, 240) == pytest.approx((0, 0, 64, 64))


def test_coverage_is_exact_and_counts_overlaps_once() -> None:
    cfg = PreprocessConfig(image_size=32, channels=1, crop_fraction=0.5)
    view = model_view((128, 128), cfg)  # the view is film pixels 32..96, 2 film pixels per input pixel
    boxes = np.array([[32, 32, 10, 10], [37, 37, 10, 10], [0, 0, 10, 10], [86, 92, 40, 40]], dtype=float)
    coverage = box_coverage(view, boxes)
    # input pixels: 0..5 and 2.5..7.5 squares overlapping on 2.5x2.5; the third box is outside the
    # view; the last is clipped to 27..32 x 30..32
    assert coverage.sum() == pytest.approx(25 + 25 - 6.25 + 10)
    assert coverage.max() == 1.0 and coverage[0, 0] == 1.0 and coverage[7, 7] == pytest.approx(0.25)


def test_wilson_interval() -> None:
    low, high = wilson_interval(28, 100)
    assert (round(low, 4), round(high, 4)) == (0.2014, 0.3749)  # as statsmodels proportion_confint
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def boxed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 80x100 films, two of each class, and an untrained model file next to it."""
    root = tmp_path_factory.mktemp("boxed")
    rng = np.random.default_rng(0)
    for label in ("NORMAL", "PNEUMONIA"):
        (root / "data" / label).mkdir(parents=True)
        for i in range(2):
            film = (rng.random((80, 100)) * 255).astype(np.uint8)
            Image.fromarray(film).save(root / "data" / label / f"f{i}.png")
    config = tiny_config()
    net = build_model(config.model, config.preprocess)
    meta = ModelMeta(model=config.model, preprocess=config.preprocess, config=config)
    save_model(root / "model.safetensors", network_tensors(net), meta)
    return root


def _evaluate(root: Path, boxes: Path, *extra: str) -> int:
    return main(
        ["evaluate", str(root / "model.safetensors"), str(root / "data"), "--boxes", str(boxes), *extra]
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_film_without_boxes_is_counted_and_said(
    boxed_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # paths relative to the CSV's folder, as in a labels CSV
    boxes = _write(boxed_data / "boxes.csv", "path,x,y,width,height\ndata/PNEUMONIA/f0.png,10,5,30,40\n")
    assert _evaluate(boxed_data, boxes, "--quiet", "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "of 1 PNEUMONIA films" in out and "1 PNEUMONIA films have no boxes" in out

    found = json.loads((tmp_path / "out" / "metrics.json").read_text())["localisation"]
    assert found["films"] == 1 and found["pneumonia_films_without_boxes"] == 1
    # the model's view is the whole 80x100 film (crop 1.0): chance is the box's share of it
    assert found["chance_hit_rate"] == pytest.approx(30 * 40 / (80 * 100), abs=1e-4)
    assert len(found["hit_rate_interval"]) == 2 and 0 <= found["mass_in_boxes"] <= 1
    assert (tmp_path / "out" / "localisation.csv").is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "boxes.csv: boxes CSV not found"),
        ("path,x,y,width\n", "no height column"),
        ("path,x,y,width,height\n{data}/PNEUMONIA/f0.png,70,5,31,40\n", "line 2: box x=70 y=5 width=31"),
        ("path,x,y,width,height\n{data}/PNEUMONIA/f0.png,10,5,-1,40\n", "line 2: box x=10 y=5 width=-1"),
        ("path,x,y,width,height\n{data}/PNEUMONIA/f0.png,ten,5,1,4\n", "line 2: x 'ten' is not a number"),
        ("path,x,y,width,height\n{data}/PNEUMONIA/f0.png,1,1,2,2\nelse.png,1,1,2,2\n", "line 3: "),
    ],
)
def test_wrong_boxes_are_refused_in_one_line(
    boxed_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    boxes = tmp_path / "boxes.csv"
    if text is not None:
        boxes.write_text(text.format(data=boxed_data / "data"))
    assert _evaluate(boxed_data, boxes, "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pneumoscan: error:") and len(err.splitlines()) == 1
    assert message in err
    if "x=70" in message:
        assert "reaches outside" in err and "f0.png (100x80 pixels)" in err
    if "line 3" in message:
        assert (
            f"line 3: else.png is not a film of the data; paths are relative to the CSV's folder {tmp_path}"
            in err
        )
