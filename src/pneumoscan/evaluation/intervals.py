"""Exact (Clopper-Pearson) confidence bounds of a proportion such as sensitivity or specificity.

The one home of this arithmetic: the target threshold rules of :mod:`pneumoscan.calibration`,
``pneumoscan calibrate`` and the operating point shown by ``evaluate`` all use it.  A proportion
``k / n`` (e.g. pneumonia films flagged / pneumonia films) has the one-sided lower bound
``Beta(1 - confidence; k, n - k + 1)`` (0 when ``k = 0``): the true proportion is at least that with
probability ``confidence``, treating the films as independent draws.  Torch-free (scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

LEVEL = 0.95
METHOD = "Clopper-Pearson (exact binomial, films counted as independent)"


def lower_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of ``k / n`` at ``confidence`` (0 for ``k = 0``)."""
    if not 0 <= k <= n or n == 0:
        raise ValueError(f"a proportion needs 0 <= k <= n and n > 0, not {k}/{n}")
    return 0.0 if k == 0 else float(beta.ppf(1.0 - confidence, k, n - k + 1))


def upper_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of ``k / n`` at ``confidence`` (1 for ``k = n``)."""
    return 1.0 - lower_bound(n - k, n, confidence)


def films_needed(target: float, confidence: float) -> int | None:
    """Smallest ``n`` for which ``n / n`` has a lower bound >= ``target`` at ``confidence``.

    The lower bound of ``n / n`` is ``(1 - confidence) ** (1 / n)``; fewer films than this cannot
    support ``target`` even when every one of them is right.  None for a target of 1, which no
    number of films can bound.
    """
    if target >= 1.0:
        return None
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(target)))
    while lower_bound(n, n, confidence) < target:  # guard against rounding in the logarithms
        n += 1
    while n > 1 and lower_bound(n - 1, n - 1, confidence) >= target:
        n -= 1
    return n


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` films right, the estimate ``k / n`` and its two-sided interval at ``level``."""

    k: int
    n: int
    level: float = LEVEL

    @property
    def estimate(self) -> float:
        """``k / n``."""
        return self.k / self.n

    @property
    def low(self) -> float:
        """Lower end of the two-sided interval (the one-sided bound at ``(1 + level) / 2``)."""
        return lower_bound(self.k, self.n, (1 + self.level) / 2)

    @property
    def high(self) -> float:
        """Upper end of the two-sided interval."""
        return upper_bound(self.k, self.n, (1 + self.level) / 2)

    def as_dict(self) -> dict[str, float | int]:
        """``{"estimate", "low", "high", "k", "n", "level"}`` for JSON."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "k": self.k,
            "n": self.n,
            "level": self.level,
        }

    def text(self) -> str:
        """E.g. ``0.912 = 104/114 (95% CI 0.846-0.955)``."""
        return f"{self.estimate:.3f} = {self.k}/{self.n} ({self.level:.0%} CI {self.low:.3f}-{self.high:.3f})"


def format_operating_point(entry: dict) -> str:
    """One line from ``evaluate``'s ``operating_point`` metrics: each rate, its interval, the method."""
    rates = [
        f"{name} {Proportion(value['k'], value['n'], value['level']).text()}"
        for name, value in entry.items()
        if name != "method"
    ]
    return f"{', '.join(rates)}; {entry['method']}"


def operating_point(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, level: float = LEVEL
) -> dict[str, Proportion]:
    """Sensitivity and specificity at ``threshold`` as :class:`Proportion` (a class absent: left out)."""
    labels = np.asarray(labels).astype(int)
    flagged = np.asarray(probabilities, dtype=np.float64) >= threshold
    found = {
        "sensitivity": (int((flagged & (labels == 1)).sum()), int((labels == 1).sum())),
        "specificity": (int((~flagged & (labels == 0)).sum()), int((labels == 0).sum())),
    }
    return {name: Proportion(k, n, level) for name, (k, n) in found.items() if n}
