"""The bound rules: thresholds whose Clopper-Pearson lower bound meets a target (closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from pneumoscan.calibration import choose_threshold
from pneumoscan.config import CalibrationConfig
from pneumoscan.evaluation.intervals import Proportion, films_needed, lower_bound, operating_point
from pneumoscan.model_file import CalibrationRecord, ModelMeta


def _fewest_right(n: int, target: float, confidence: float) -> int:
    """Clopper-Pearson duality: the lower bound of k/n is >= S iff P(Binomial(n, S) >= k) <= 1 - c."""
    return min(k for k in range(1, n + 1) if binom.sf(k - 1, n, target) <= 1 - confidence)


def _scores(n_pos: int, n_neg: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores: positives in (0.3, 0.95), negatives in (0.05, 0.7), shuffled."""
    rng = np.random.default_rng(seed)
    positives = rng.permutation(np.linspace(0.3, 0.95, n_pos))
    negatives = rng.permutation(np.linspace(0.05, 0.7, n_neg) + 1e-3)
    return np.r_[positives, negatives], np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]


@pytest.mark.parametrize(("n", "target", "confidence"), [(100, 0.85, 0.95), (410, 0.9, 0.95), (60, 0.7, 0.9)])
def test_the_sensitivity_bound_threshold_in_closed_form(n: int, target: float, confidence: float) -> None:
    probabilities, labels = _scores(n, 50)
    rule = CalibrationConfig(
        threshold_rule="sensitivity-bound", target_sensitivity=target, confidence=confidence
    )
    choice = choose_threshold(probabilities, labels, rule, "calibration")
    k = _fewest_right(n, target, confidence)
    assert choice.threshold == np.sort(probabilities[labels == 1])[n - k]  # the k highest are flagged
    result = choice.target
    assert result is not None and result.reached and (result.correct, result.films) == (k, n)
    assert result.bound == pytest.approx(lower_bound(k, n, confidence)) and result.bound >= target
    assert lower_bound(k - 1, n, confidence) < target  # one more miss would break the bound
    assert (
        f"{confidence:.0%} lower confidence bound" in choice.rule
        and f"sensitivity >= {target:g}" in choice.rule
    )
    point = choose_threshold(
        probabilities,
        labels,
        CalibrationConfig(threshold_rule="sensitivity-point", target_sensitivity=target),
    )
    assert point.threshold > choice.threshold and point.target is not None and point.target.bound is None


def test_the_specificity_bound_threshold_in_closed_form() -> None:
    probabilities, labels = _scores(40, 120)
    rule = CalibrationConfig(threshold_rule="specificity-bound", target_specificity=0.8)
    choice = choose_threshold(probabilities, labels, rule)
    k = _fewest_right(120, 0.8, 0.95)
    negatives = np.sort(probabilities[labels == 0])
    assert negatives[k - 1] < choice.threshold <= negatives[k]  # the lowest threshold clearing k normals
    assert choice.threshold == pytest.approx(negatives[k - 1], abs=1e-12)
    assert operating_point(labels, probabilities, choice.threshold)["specificity"].k == k
    assert choice.target is not None and choice.target.reached and "lowest threshold" in choice.rule


def test_clopper_pearson_bounds_and_the_films_needed() -> None:
    assert lower_bound(0, 10, 0.95) == 0.0 and lower_bound(10, 10, 0.95) == pytest.approx(0.05 ** (1 / 10))
    # 40 of 40 cannot bound 0.95; it takes 59 = ceil(log 0.05 / log 0.95)
    assert lower_bound(40, 40, 0.95) < 0.95
    assert films_needed(0.95, 0.95) == 59 == math.ceil(math.log(0.05) / math.log(0.95))
    assert lower_bound(59, 59, 0.95) >= 0.95 > lower_bound(58, 58, 0.95)
    assert films_needed(0.85, 0.95) == 19 and films_needed(1.0, 0.95) is None
    interval = Proportion(31, 34)
    assert interval.low < 31 / 34 < interval.high
    assert interval.low == pytest.approx(lower_bound(31, 34, 0.975)) and "31/34 (95% CI" in interval.text()


def test_too_few_positives_flag_every_one_and_say_how_many_it_takes() -> None:
    probabilities, labels = _scores(40, 40)
    rule = CalibrationConfig(threshold_rule="sensitivity-bound", target_sensitivity=0.95)
    choice = choose_threshold(probabilities, labels, rule, "calibration")
    assert choice.threshold == probabilities[labels == 1].min()
    result = choice.target
    assert result is not None and not result.reached and result.correct == 40 and result.needed == 59
    line = result.shortfall()
    assert "\n" not in line and "40 PNEUMONIA calibration films cannot support sensitivity >= 0.95" in line
    assert "it takes at least 59 PNEUMONIA films" in line


def test_old_files_with_the_sensitivity_rule_read_as_the_point_rule() -> None:
    assert CalibrationConfig(threshold_rule="sensitivity").threshold_rule == "sensitivity-point"
    meta = ModelMeta.model_validate(
        {
            "model": {"architecture": "seed_cnn"},
            "preprocess": {},
            "config": {"calibration": {"threshold_rule": "sensitivity", "target_sensitivity": 0.9}},
        }
    )
    assert meta.config is not None and meta.config.calibration.threshold_rule == "sensitivity-point"
    old_record = {
        "date": "2026-01-01T00:00:00+00:00",
        "data": ["site"],
        "split": "val",
        "sites": ["site"],
        "films": {"NORMAL": 20, "PNEUMONIA": 20},
        "patients": 40,
        "content_hash": "0" * 64,
        "previous": {"temperature": 1.0, "threshold": 0.5, "threshold_rule": "fixed at 0.5"},
        "new": {"temperature": 1.2, "threshold": 0.4, "threshold_rule": "highest threshold keeping ..."},
    }
    record = CalibrationRecord.model_validate(old_record)
    assert record.rule == "" and record.confidence is None and record.counts == {} and not record.forced
