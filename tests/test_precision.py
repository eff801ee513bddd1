"""Inference precision: fp32 on every CPU unless bf16 is asked for, so both engines agree anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pneumoscan import hardware
from pneumoscan.cli import main
from pneumoscan.errors import UnsupportedInputError
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import prepare
from pneumoscan.synthetic import synthetic_film

NATIVE_BF16 = hardware.has_native_bf16()


@pytest.fixture(scope="module")
def films() -> np.ndarray:
    """Prepared inputs of the bundled model: synthetic films with and without opacities, and noise."""
    rng = np.random.default_rng(7)
    meta = Predictor.load().meta
    images = [synthetic_film(rng, sick, size=256) for sick in (False, True, False, True)]
    images += [rng.integers(0, 256, (256, 256), dtype=np.uint8), np.full((256, 256), 128, np.uint8)]
    return np.stack([prepare(image, meta.preprocess) for image in images])


def test_the_torch_engine_infers_in_fp32_even_where_the_cpu_has_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """It used bf16 wherever the CPU had it natively, so the same film got another probability there."""
    monkeypatch.setattr(hardware.torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert hardware.has_native_bf16()
    assert Predictor.load().engine.bf16 is False  # type: ignore[attr-defined]
    assert Predictor.load(bf16=True).engine.bf16 is True  # type: ignore[attr-defined]


def test_torch_and_onnx_agree_on_the_bundled_model(films: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    from pneumoscan.export import export_onnx
    from pneumoscan.model_source import bundled_model_path

    onnx_model = export_onnx(bundled_model_path(), tmp_path / "bundled.onnx")
    torch_scores = Predictor.load().scores(films)
    onnx_scores = Predictor.load(onnx_model, "onnx").scores(films)
    np.testing.assert_allclose(torch_scores, onnx_scores, atol=1e-3)
    with pytest.raises(UnsupportedInputError, match="bf16 is for the torch engine"):
        Predictor.load(onnx_model, "onnx", bf16=True)


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_bf16_inference_where_the_cpu_has_it(films: np.ndarray) -> None:
    fp32, bf16 = Predictor.load(), Predictor.load(bf16=True)
    assert bf16.engine.bf16 is True  # type: ignore[attr-defined]
    np.testing.assert_allclose(bf16.probabilities(films), fp32.probabilities(films), atol=0.03)


def test_predict_bf16_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    film = tmp_path / "film.png"
    Image.fromarray(synthetic_film(np.random.default_rng(1), True, size=256)).save(film)
    assert main(["predict", str(film), "--json"]) == 0
    fp32 = json.loads(capsys.readouterr().out)["probability"]
    assert main(["predict", str(film), "--json", "--bf16"]) == 0  # emulated (slow) without native bf16
    assert json.loads(capsys.readouterr().out)["probability"] == pytest.approx(fp32, abs=0.03)
