"""Temperature scaling and the operating-threshold rule, both fitted on the validation split."""

from __future__ import annotations

import numpy as np
import torch

from pneumoscan.config import CalibrationConfig


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T`` minimising the negative log-likelihood of ``sigmoid(logits / T)``."""
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


def choose_threshold(
    probabilities: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig
) -> tuple[float, str]:
    """Operating threshold and a sentence describing the rule that chose it.

    ``fixed``: ``cfg.threshold``.  ``sensitivity``: the highest threshold at which validation
    sensitivity is still at least ``cfg.target_sensitivity``.
    """
    if cfg.threshold_rule == "fixed":
        return cfg.threshold, f"fixed at {cfg.threshold:g} on calibrated probabilities"
    positives = np.sort(probabilities[labels == 1])
    if positives.size == 0:
        return cfg.threshold, f"fixed at {cfg.threshold:g} (validation has no pneumonia images)"
    allowed_misses = int(np.floor((1 - cfg.target_sensitivity) * positives.size))
    threshold = float(np.clip(positives[allowed_misses], 1e-4, 1 - 1e-4))
    return threshold, (
        f"highest threshold keeping validation sensitivity >= {cfg.target_sensitivity:g} "
        f"({positives.size} pneumonia films)"
    )
