"""The refusal threshold of the gate, chosen on validation chest films, and what it refuses.

The threshold on ``ood_score`` is the ``1 - gate.max_refused`` quantile of the validation chest
films' scores, so at most ``gate.max_refused`` of them are refused, but never below
``gate.min_threshold``: a floor that keeps a margin for chest films from sites the model has not
seen, whose scores run higher than those of its own validation films.
"""

from __future__ import annotations

import numpy as np

from pneumoscan.config import GateConfig
from pneumoscan.model_file import GateMeta


def choose_gate(
    chest_scores: np.ndarray,
    negative_scores: dict[str, np.ndarray],
    cfg: GateConfig,
    chest_sites: np.ndarray | None = None,
) -> GateMeta:
    """The :class:`GateMeta` for validation chest films' ``ood_score`` and held-out negatives' scores."""
    quantile = (
        float(np.quantile(chest_scores, 1 - cfg.max_refused, method="higher")) if chest_scores.size else 0.0
    )
    threshold = float(np.clip(max(quantile, cfg.min_threshold), 1e-6, 1 - 1e-6))
    rule = (
        f"ood_score above the larger of {cfg.min_threshold:g} and the {1 - cfg.max_refused:.1%} quantile "
        f"of {chest_scores.size} validation chest films' scores ({quantile:.4f})"
    )
    validation: dict[str, object] = {
        "chest_films": int(chest_scores.size),
        "chest_refused": _share(chest_scores, threshold),
        "negatives": {name: int(s.size) for name, s in negative_scores.items()},
        "negatives_refused": {name: _share(s, threshold) for name, s in negative_scores.items()},
    }
    if chest_sites is not None:
        validation["chest_refused_by_site"] = {
            str(site): _share(chest_scores[chest_sites == site], threshold) for site in np.unique(chest_sites)
        }
    every = np.concatenate(list(negative_scores.values())) if negative_scores else np.zeros(0)
    validation["all_negatives_refused"] = _share(every, threshold)
    return GateMeta(threshold=threshold, rule=rule, validation=validation)


def _share(scores: np.ndarray, threshold: float) -> float | None:
    return round(float((scores > threshold).mean()), 4) if scores.size else None
