"""Temperature scaling and the operating-threshold rules (torch-free: numpy and scipy).

Training fits both on its validation split; ``pneumoscan calibrate`` refits them on a new site's
labelled films.  :func:`calibrated` is the one definition of a calibrated probability,
``sigmoid(logit / temperature)``, used by every engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit
from sklearn.metrics import roc_curve

from pneumoscan.config import CalibrationConfig
from pneumoscan.evaluation.intervals import films_needed, lower_bound

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


@dataclass(frozen=True)
class TargetResult:
    """How a target rule's threshold does on the films it was chosen on.

    ``correct`` of ``films`` films of the targeted class are right at the threshold; ``bound`` is
    the one-sided Clopper-Pearson lower bound of that proportion at ``confidence`` (None for a
    point rule); ``needed`` the fewest films of that class that could support ``target`` at
    ``confidence`` (None for a point rule, or a target of 1).
    """

    metric: str  # "sensitivity" or "specificity"
    target: float
    confidence: float | None
    correct: int
    films: int
    bound: float | None
    needed: int | None

    @property
    def reached(self) -> bool:
        """Whether the threshold meets the target: the bound (bound rules) or the proportion does."""
        value = self.correct / self.films if self.bound is None else self.bound
        return value >= self.target

    def shortfall(self, films: str = "calibration") -> str:
        """One line: why the ``films`` cannot support the target, and how many films it takes."""
        name = "PNEUMONIA" if self.metric == "sensitivity" else "NORMAL"
        needed = (
            f"it takes at least {self.needed} {name} films"
            if self.needed is not None
            else "no number of films can bound it at 1"
        )
        if self.bound is None:
            return f"{films} {self.metric} {self.correct}/{self.films} is below the target {self.target:g}"
        return (
            f"{self.films} {name} {films} films cannot support {self.metric} >= {self.target:g} at "
            f"{self.confidence:.0%} confidence (the lower bound reaches {self.bound:.3f} with "
            f"{self.correct}/{self.films} right); {needed}"
        )


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold, the sentence describing the rule that chose it, and, for target rules, how the
    threshold does against its target."""

    threshold: float
    rule: str
    target: TargetResult | None = None


def choose_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    cfg: CalibrationConfig,
    films: str = "validation",
    sites: np.ndarray | None = None,
) -> ThresholdChoice:
    """Operating threshold and a sentence describing the rule that chose it (on ``films``).

    ``fixed``: ``cfg.threshold``.  ``sensitivity-point``: the highest threshold at which sensitivity
    is still at least ``cfg.target_sensitivity``.  ``sensitivity-bound``: the highest threshold at
    which the one-sided Clopper-Pearson lower bound of sensitivity at ``cfg.confidence`` is at least
    the target (where even flagging every pneumonia film falls short: the lowest pneumonia score,
    and :attr:`TargetResult.reached` is false).  ``specificity-point`` / ``specificity-bound``: the
    same for specificity and ``cfg.target_specificity``, with the lowest such threshold.  ``youden``:
    the threshold maximising sensitivity + specificity - 1 (Youden's J), the highest one on ties.
    ``worst-site``: one threshold for every site (``sites``: each film's site), the one maximising
    the smallest sensitivity or specificity of any site, the closest to 0.5 on ties.
    """
    if cfg.threshold_rule == "fixed":
        return ThresholdChoice(cfg.threshold, f"fixed at {cfg.threshold:g} on calibrated probabilities")
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if cfg.threshold_rule == "worst-site":
        return _worst_site(probabilities, labels, np.zeros(len(labels)) if sites is None else sites, films)
    if not (labels == 1).any():
        return ThresholdChoice(cfg.threshold, f"fixed at {cfg.threshold:g} ({films} has no pneumonia images)")
    if cfg.threshold_rule == "youden":
        return _youden(probabilities, labels, cfg, films)
    return _target(probabilities, labels, cfg, films)


def _target(
    probabilities: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig, films: str
) -> ThresholdChoice:
    metric, kind = cfg.threshold_rule.split("-")
    sensitivity = metric == "sensitivity"
    target = cfg.target_sensitivity if sensitivity else cfg.target_specificity
    scores = np.sort(probabilities[labels == int(sensitivity)])  # the targeted class, ascending
    name = "pneumonia" if sensitivity else "normal"
    n = scores.size
    if n == 0:
        return ThresholdChoice(cfg.threshold, f"fixed at {cfg.threshold:g} ({films} has no {name} images)")
    confidence = cfg.confidence if kind == "bound" else None
    if confidence is None:
        k = n - int(np.floor((1 - target) * n))  # films of the class the threshold must get right
    else:
        bounds = np.array([lower_bound(k, n, confidence) for k in range(1, n + 1)])
        k = 1 + int(np.argmax(bounds >= target)) if bounds[-1] >= target else n
    # sensitivity: the k highest pneumonia scores flagged; specificity: the k lowest normal scores not
    raw = scores[n - k] if sensitivity else np.nextafter(scores[k - 1], np.inf)
    threshold = float(np.clip(raw, 1e-4, 1 - 1e-4))
    correct = int((scores >= threshold).sum() if sensitivity else (scores < threshold).sum())
    result = TargetResult(
        metric,
        target,
        confidence,
        correct,
        n,
        None if confidence is None else lower_bound(correct, n, confidence),
        None if confidence is None else films_needed(target, confidence),
    )
    side = "highest" if sensitivity else "lowest"
    if confidence is None:
        text = f"{side} threshold keeping {films} {metric} >= {target:g} ({n} {name} films)"
    elif result.reached:
        text = (
            f"{side} threshold keeping the {confidence:.0%} lower confidence bound (Clopper-Pearson) of "
            f"{films} {metric} >= {target:g} (bound {result.bound:.3f}; {correct}/{n} {name} films)"
        )
    else:
        text = (
            f"{side} threshold getting all {n} {name} films right, too few for the {confidence:.0%} lower "
            f"confidence bound of {films} {metric} to reach {target:g} (bound {result.bound:.3f})"
        )
    return ThresholdChoice(threshold, text, result)


def _worst_site(
    probabilities: np.ndarray, labels: np.ndarray, sites: np.ndarray, films: str
) -> ThresholdChoice:
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
    return ThresholdChoice(
        threshold,
        f"one threshold for {count} site{'s' * (count > 1)}: the largest worst per-site sensitivity or "
        f"specificity on {films} films ({worst.max():.3f})",
    )


def _youden(
    probabilities: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig, films: str
) -> ThresholdChoice:
    if np.all(labels == 1):
        return ThresholdChoice(cfg.threshold, f"fixed at {cfg.threshold:g} ({films} has no normal images)")
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    threshold = float(np.clip(thresholds[best], 1e-4, 1 - 1e-4))
    return ThresholdChoice(
        threshold,
        f"maximal sensitivity + specificity on {films} films (Youden's J; sensitivity {tpr[best]:.3f}, "
        f"specificity {1 - fpr[best]:.3f})",
    )
