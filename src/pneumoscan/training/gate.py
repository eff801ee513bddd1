"""The refusal threshold of the gate, chosen on validation chest films, and what it refuses.

The threshold on ``ood_score`` is the highest of the sites' ``1 - gate.max_refused`` quantiles of their
validation chest films' scores, so at most ``gate.max_refused`` of any site's films are refused (a site
of unusual films -- bedside, low contrast -- is not sacrificed to the others), but never below
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
    groups = (
        [chest_scores]
        if chest_sites is None
        else [chest_scores[chest_sites == s] for s in np.unique(chest_sites)]
    )
    quantile = max(
        (float(np.quantile(g, 1 - cfg.max_refused, method="higher")) for g in groups if g.size), default=0.0
    )
    threshold = float(np.clip(max(quantile, cfg.min_threshold), 1e-6, 1 - 1e-6))
    each = "each site's" if chest_sites is not None else "the"
    rule = (
        f"ood_score above the larger of {cfg.min_threshold:g} and the highest {1 - cfg.max_refused:.1%} "
        f"quantile of {each} validation chest films' scores ({chest_scores.size} films; {quantile:.4f})"
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
