"""Temperature scaling and the operating-threshold rules (torch-free: numpy and scipy).

Training fits both on its validation split; ``pneumoscan calibrate`` refits them on a new site's
labelled films.  :func:`calibrated` is the one definition of a calibrated probability,
``sigmoid(logit / temperature)``, used by every engine.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit
from sklearn.metrics import roc_curve

from pneumoscan.config import CalibrationConfig

TEMPERATURE_RANGE = (0.05, 20.0)  # a fitted temperature is kept inside this range


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities of pneumonia, ``sigmoid(logits / temperature)``, as float64."""
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def ood_scores(gate_logits: np.ndarray) -> np.ndarray:
    """Out-of-distribution scores ``1 - sigmoid(gate logit)`` = ``sigmoid(-gate logit)``, as float64."""
    return expit(-np.asarray(gate_logits, dtype=np.float64))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T`` minimising the negative log-likelihood of ``sigmoid(logits / T)``.

    The likelihood is convex in ``1 / T``, so a bounded scalar search over ``1 / T`` finds the one
    optimum; a temperature outside :data:`TEMPERATURE_RANGE` is clipped to it.
    """
    z = np.asarray(logits, dtype=np.float64)
    sign = np.where(np.asarray(labels) == 1, 1.0, -1.0)
    if not np.any(z):
        return 1.0  # all logits zero: every temperature gives the same likelihood

    def nll(inverse: float) -> float:
        return float(-log_expit(sign * z * inverse).mean())

    low, high = TEMPERATURE_RANGE
    found = minimize_scalar(nll, bounds=(1 / high, 1 / low), method="bounded", options={"xatol": 1e-10})
    return float(np.clip(1.0 / found.x, low, high))


def choose_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    cfg: CalibrationConfig,
    films: str = "validation",
    sites: np.ndarray | None = None,
) -> tuple[float, str]:
    """Operating threshold and a sentence describing the rule that chose it (on ``films``).

    ``fixed``: ``cfg.threshold``.  ``sensitivity``: the highest threshold at which sensitivity is
    still at least ``cfg.target_sensitivity``.  ``youden``: the threshold maximising
    sensitivity + specificity - 1 (Youden's J), the highest one on ties.  ``worst-site``: one
    threshold for every site (``sites``: each film's site), the one maximising the smallest
    sensitivity or specificity of any site, the closest to 0.5 on ties.
    """
    if cfg.threshold_rule == "fixed":
        return cfg.threshold, f"fixed at {cfg.threshold:g} on calibrated probabilities"
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if cfg.threshold_rule == "worst-site":
        return _worst_site(probabilities, labels, np.zeros(len(labels)) if sites is None else sites, films)
    positives = np.sort(probabilities[labels == 1])
    if positives.size == 0:
        return cfg.threshold, f"fixed at {cfg.threshold:g} ({films} has no pneumonia images)"
    if cfg.threshold_rule == "youden":
        return _youden(probabilities, labels, cfg, films)
    allowed_misses = int(np.floor((1 - cfg.target_sensitivity) * positives.size))
    threshold = float(np.clip(positives[allowed_misses], 1e-4, 1 - 1e-4))
    return threshold, (
        f"highest threshold keeping {films} sensitivity >= {cfg.target_sensitivity:g} "
        f"({positives.size} pneumonia films)"
    )


def _worst_site(
    probabilities: np.ndarray, labels: np.ndarray, sites: np.ndarray, films: str
) -> tuple[float, str]:
    candidates = np.unique(np.clip(np.concatenate([probabilities, [0.5]]), 1e-4, 1 - 1e-4))
    worst = np.ones(len(candidates))
    for site in np.unique(sites):
        p, y = probabilities[sites == site], labels[sites == site]
        predicted = p[None, :] >= candidates[:, None]
        for label, correct in ((1, predicted), (0, ~predicted)):
            if (y == label).any():
                worst = np.minimum(worst, correct[:, y == label].mean(axis=1))
    best = np.flatnonzero(worst == worst.max())
    threshold = float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])
    count = len(np.unique(sites))
    return threshold, (
        f"one threshold for {count} site{'s' * (count > 1)}: the largest worst per-site sensitivity or "
        f"specificity on {films} films ({worst.max():.3f})"
    )


def _youden(
    probabilities: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig, films: str
) -> tuple[float, str]:
    if np.all(labels == 1):
        return cfg.threshold, f"fixed at {cfg.threshold:g} ({films} has no normal images)"
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    threshold = float(np.clip(thresholds[best], 1e-4, 1 - 1e-4))
    return threshold, (
        f"maximal sensitivity + specificity on {films} films (Youden's J; sensitivity {tpr[best]:.3f}, "
        f"specificity {1 - fpr[best]:.3f})"
    )
