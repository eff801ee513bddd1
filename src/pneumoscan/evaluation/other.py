"""OTHER films (another finding, not pneumonia): the fraction the model calls PNEUMONIA.

Films of a class that is not one of the model's outputs (:func:`pneumoscan.classes.is_output_class`)
are not part of the NORMAL/PNEUMONIA metrics; for them the measure is the fraction called
``PNEUMONIA`` at the model's threshold, with a 95 % Wilson score interval over films, separately for
clear and ambiguous films (:func:`pneumoscan.classes.ambiguous_of`), overall and per site.  The Wilson
interval treats films as independent (OTHER films are mostly one per patient); unlike a bootstrap it
stays honest at 0 % and with few films.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from pneumoscan.classes import POSITIVE, ambiguous_of, film_classes_of, is_output_class
from pneumoscan.evaluation.bootstrap import LEVEL

METHOD = f"Wilson score interval, {LEVEL:.0%}, over films"
KINDS = ("clear", "ambiguous")


def wilson_interval(called: int, films: int, level: float = LEVEL) -> tuple[float, float] | None:
    """Wilson score interval of the proportion ``called / films``; None without films."""
    if films == 0:
        return None
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = called / films
    centre = (p + z * z / (2 * films)) / (1 + z * z / films)
    half = z * np.sqrt(p * (1 - p) / films + z * z / (4 * films * films)) / (1 + z * z / films)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def called_entry(predicted: np.ndarray, patients: np.ndarray) -> dict[str, Any]:
    """Films, patients, films called PNEUMONIA, the fraction and its interval (``ci``) of one set."""
    films, called = len(predicted), int(np.asarray(predicted).astype(bool).sum())
    interval = wilson_interval(called, films)
    return {
        "films": films,
        "patients": len(np.unique(patients)),
        "called_pneumonia": called,
        "fraction": called / films if films else None,
        "ci": list(interval) if interval else None,
    }


def other_kinds(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of the clear and the ambiguous films that are not of an output class (OTHER)."""
    other = ~film_classes_of(table).map(is_output_class).to_numpy(dtype=bool)
    ambiguous = ambiguous_of(table)
    return {"clear": other & ~ambiguous, "ambiguous": other & ambiguous}


def other_metrics(table: pd.DataFrame) -> dict[str, Any] | None:
    """For a predictions table (``predicted``, class columns, ``site``, ``patient_id``): the fraction
    of clear and of ambiguous OTHER films called PNEUMONIA, overall and per site; None without any."""
    kinds = other_kinds(table)
    if not any(mask.any() for mask in kinds.values()):
        return None
    predicted = table["predicted"].to_numpy()
    patients = table["patient_id"].to_numpy() if "patient_id" in table else np.arange(len(table))
    sites = table["site"].astype(str).to_numpy() if "site" in table else np.full(len(table), "")

    def entries(where: np.ndarray) -> dict[str, Any]:
        return {
            kind: called_entry(predicted[mask & where], patients[mask & where])
            for kind, mask in kinds.items()
            if (mask & where).any()
        }

    films = kinds["clear"] | kinds["ambiguous"]
    return {
        "called": POSITIVE,
        "method": METHOD,
        **entries(np.ones(len(table), bool)),
        "per_site": {site: entries(sites == site) for site in sorted(set(sites[films]))},
    }


def with_fraction(entry: dict[str, Any] | None) -> str:
    """``12 of 40 (30.0 %) [17.9-45.6 %]``, or ``n/a`` for no films."""
    if not entry or not entry["films"]:
        return "n/a"
    low, high = entry["ci"]
    return (
        f"{entry['called_pneumonia']} of {entry['films']} ({100 * entry['fraction']:.1f} %) "
        f"[{100 * low:.1f}-{100 * high:.1f} %]"
    )


def format_other(other: dict[str, Any] | None) -> str:
    """Terminal lines for :func:`other_metrics` (empty without OTHER films)."""
    if not other:
        return ""
    lines = [f"OTHER films (another finding) called {other['called']}, with {other['method']}"]
    rows = [("all sites", {k: other.get(k) for k in KINDS}), *other["per_site"].items()]
    for name, entry in rows:
        cells = "   ".join(f"{kind} {with_fraction(entry.get(kind))}" for kind in KINDS)
        lines.append(f"  {name[:20]:<20}{cells}")
    return "\n".join(lines)
