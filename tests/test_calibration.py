"""Temperature scaling, threshold rules and the calibration error (torch-free implementations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError

from pneumoscan.calibration import TEMPERATURE_RANGE, calibrated, choose_threshold, fit_temperature
from pneumoscan.config import CalibrationConfig
from pneumoscan.evaluation.metrics import expected_calibration_error


def torch_lbfgs_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The earlier PyTorch implementation (LBFGS on log T), kept here as the reference."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def _logits(seed: int, n: int = 400, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits from a model that is over- (scale > 1) or under-confident (scale < 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    true_logits = rng.normal(1.5 * (2 * labels - 1), 1.5)
    drawn = (rng.random(n) < 1 / (1 + np.exp(-true_logits))).astype(int)
    return scale * true_logits, drawn


@pytest.mark.parametrize(("seed", "scale"), [(0, 3.0), (1, 0.4), (2, 1.0), (3, 8.0)])
def test_temperature_matches_the_torch_lbfgs_implementation(seed: int, scale: float) -> None:
    logits, labels = _logits(seed, scale=scale)
    expected = torch_lbfgs_temperature(logits, labels)
    got = fit_temperature(logits, labels)
    # LBFGS (lr 0.1) stops a little short of the optimum: the same temperature within 0.05 %, and a
    # likelihood at least as good
    assert got == pytest.approx(expected, rel=5e-4)
    assert _nll(logits, labels, got) <= _nll(logits, labels, expected)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = calibrated(logits, temperature)
    return float(-np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)))


def test_temperature_recovers_a_known_optimum() -> None:
    # Labels drawn from sigmoid(t) and logits multiplied by 4: the NLL optimum is T = 4 in the
    # limit; on a finite sample it is where the derivative of the NLL in 1/T vanishes.
    logits, labels = _logits(5, n=200_000, scale=4.0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(4.0, rel=0.02)
    gradient = np.mean((calibrated(logits, temperature) - labels) * logits)
    assert abs(gradient) < 1e-6


def test_temperature_edge_cases() -> None:
    assert fit_temperature(np.zeros(10), np.arange(10) % 2) == 1.0
    separable = np.array([-5.0, -4.0, 4.0, 5.0])
    assert fit_temperature(separable, np.array([0, 0, 1, 1])) == pytest.approx(TEMPERATURE_RANGE[0])


def test_calibrated_is_a_stable_sigmoid() -> None:
    probabilities = calibrated(np.array([-1000.0, 0.0, 2.0, 1000.0]), 2.0)
    expected = [0.0, 0.5, 1 / (1 + np.exp(-1.0)), 1.0]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12, atol=1e-200)


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.random(1000)
    labels = (rng.random(1000) < probabilities**2).astype(int)
    reference = BinaryCalibrationError(n_bins=10, norm="l1")(
        torch.as_tensor(probabilities), torch.as_tensor(labels)
    )
    assert expected_calibration_error(labels, probabilities) == pytest.approx(float(reference), abs=1e-6)


def test_temperature_scaling_lowers_the_calibration_error() -> None:
    logits, labels = _logits(7, n=4000, scale=5.0)
    before = expected_calibration_error(labels, calibrated(logits, 1.0))
    after = expected_calibration_error(labels, calibrated(logits, fit_temperature(logits, labels)))
    assert after < before / 2


def test_threshold_rules() -> None:
    probabilities = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    fixed = choose_threshold(probabilities, labels, CalibrationConfig(threshold=0.4))
    assert fixed.threshold == 0.4 and fixed.target is None
    sensitive = choose_threshold(
        probabilities, labels, CalibrationConfig(threshold_rule="sensitivity-point", target_sensitivity=1.0)
    )
    assert sensitive.threshold == 0.35 and sensitive.target is not None and sensitive.target.reached
    youden = choose_threshold(probabilities, labels, CalibrationConfig(threshold_rule="youden"))
    # 0.7: sensitivity 3/4, specificity 4/4 (J = 0.75); 0.35: 4/4 and 3/4 (J = 0.75): the higher one
    assert youden.threshold == 0.7 and "Youden" in youden.rule
    one_class = choose_threshold(probabilities, np.ones(8), CalibrationConfig(threshold_rule="youden"))
    assert one_class.threshold == 0.5 and "no normal images" in one_class.rule
