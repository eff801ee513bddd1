"""Metrics per site and per subgroup (view, sex, age band), each with patient-bootstrap intervals.

A film's groups come from the manifest columns ``site``, ``view``, ``sex`` and ``age``; a dimension
is reported when at least one film carries a value for it, and films without one form the group
``unknown``.  Ages are put in the bands of :data:`AGE_BANDS`.  Point values come from
:func:`~pneumoscan.evaluation.metrics.binary_metrics`; the intervals from
:func:`~pneumoscan.evaluation.bootstrap.bootstrap_metrics`, resampling patients.  A group of fewer
than :data:`~pneumoscan.evaluation.metrics.MIN_FILMS` films is reported with its counts and point
values only (no ROC-AUC, as in the headline; no intervals); a one-class group has no ROC-AUC.  The
metrics measure the NORMAL and PNEUMONIA films of a group; a group with OTHER films also gets the
fraction of its clear and ambiguous OTHER films called PNEUMONIA (``other``,
:mod:`pneumoscan.evaluation.other`).  The functions take any subset of a predictions table, so films
left out (e.g. refused ones) are simply not passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pneumoscan.classes import OUTPUT_CLASSES, binary_films
from pneumoscan.evaluation.bootstrap import LEVEL, RESAMPLES, bootstrap_metrics, clusters_of
from pneumoscan.evaluation.metrics import MIN_FILMS, binary_metrics
from pneumoscan.evaluation.other import KINDS, called_entry, other_kinds, with_fraction

GROUP_COLUMNS = ("site", "view", "sex", "age")
AGE_BANDS: tuple[tuple[float, str], ...] = ((18, "0-17"), (40, "18-39"), (65, "40-64"), (np.inf, "65+"))
UNKNOWN = "unknown"
HEADLINE = ("accuracy", "roc_auc", "sensitivity", "specificity", "ece")


def with_group_columns(frame: pd.DataFrame, default_site: str) -> pd.DataFrame:
    """``frame`` with every column of :data:`GROUP_COLUMNS` (``site`` defaults to ``default_site``)."""
    missing = {column: "" for column in GROUP_COLUMNS if column not in frame}
    if "site" in missing:
        missing["site"] = default_site
    return frame.assign(**missing)


def age_band(age: object) -> str:
    """The band of :data:`AGE_BANDS` holding ``age`` in years; :data:`UNKNOWN` if missing or invalid."""
    years = pd.to_numeric(pd.Series([age]), errors="coerce").iloc[0]
    if pd.isna(years) or years < 0:
        return UNKNOWN
    return next(name for upper, name in AGE_BANDS if years < upper)


def group_labels(table: pd.DataFrame, column: str) -> pd.Series | None:
    """Group name of each film for ``column``; ``None`` when no film carries a value for it."""
    if column not in table:
        return None
    if column == "age":
        names = table[column].map(age_band)
    else:
        text = table[column].astype("string").fillna("").str.strip()
        names = text.mask(text == "", UNKNOWN)
    return None if (names == UNKNOWN).all() else names.astype(str)


def group_metrics(
    table: pd.DataFrame, threshold: float, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dimension: {group: entry}}`` for a predictions table (``label``, ``probability``, groups).

    Each entry has ``films``, ``patients``, films per class, the headline metrics and ``ci``
    (``{metric: [low, high]}``, 95 %) of its NORMAL and PNEUMONIA films; with OTHER films in the
    table, also ``OTHER`` (their number) and ``other`` (``{"clear"|"ambiguous": called_entry}``).
    """
    clusters = clusters_of(table)
    labels = table["label"].to_numpy().astype(int)
    probabilities = table["probability"].to_numpy(dtype=np.float64)
    binary = binary_films(table)
    kinds = other_kinds(table)
    predicted = probabilities >= threshold
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for column in GROUP_COLUMNS:
        names = group_labels(table, column)
        if names is None:
            continue
        result[column] = {}
        for name in sorted(names.unique(), key=_group_order):
            mask = (names == name).to_numpy()
            both = mask & binary
            entry = group_entry(labels[both], probabilities[both], clusters[both], threshold, resamples, seed)
            if not binary.all():
                entry["OTHER"] = int((mask & ~binary).sum())
                entry["other"] = {
                    kind: called_entry(predicted[mask & which], clusters[mask & which])
                    for kind, which in kinds.items()
                    if (mask & which).any()
                }
            result[column][name] = entry
    return result


def group_entry(
    labels: np.ndarray,
    probabilities: np.ndarray,
    clusters: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Counts, headline metrics and bootstrap intervals (over ``clusters``) of one group of films."""
    measured = binary_metrics(labels, probabilities, threshold)
    entry: dict[str, Any] = {
        "films": len(labels),
        "patients": len(np.unique(clusters)),
        **{name: int((labels == target).sum()) for target, name in enumerate(OUTPUT_CLASSES)},
    }
    entry.update({name: measured[name] for name in HEADLINE})
    if len(labels) < MIN_FILMS:
        entry["ci"] = {}
        entry["note"] = f"fewer than {MIN_FILMS} films: counts and point values only"
        return entry
    intervals = bootstrap_metrics(labels, probabilities, threshold, resamples, seed, clusters=clusters)
    entry["ci"] = {
        name: [value.low, value.high]
        for name, value in intervals.items()
        if name in HEADLINE and value.low is not None
    }
    if entry["roc_auc"] is None:
        entry["note"] = "one class only: no ROC-AUC"
    return entry


def bootstrap_description(clusters: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """What the intervals resample: patients (when some have several films) or films."""
    patients = len(np.unique(clusters))
    unit = "patient" if patients < len(clusters) else "film"
    return {"unit": unit, "clusters": patients, "resamples": resamples, "level": LEVEL, "seed": seed}


def format_groups(groups: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Terminal table of :func:`group_metrics`: one line per group (films and patients of NORMAL and
    PNEUMONIA), and with OTHER films, their number and the fraction called PNEUMONIA."""
    negative, positive = OUTPUT_CLASSES
    lines = []
    for column, entries in groups.items():
        others = any("other" in entry for entry in entries.values())
        lines.append(
            f"{column:<14}{'films':>7}{'patients':>9}{negative[:6]:>7}{positive[:5] + '.':>7}  "
            f"{'accuracy':<21}{'ROC-AUC':<21}{'sensitivity':<21}{'specificity':<21}".rstrip()
            + (f"{'OTHER':>7}  {'clear OTHER called ' + positive:<36}ambiguous" if others else "")
        )
        for name, entry in entries.items():
            cells = "".join(f"{with_interval(entry, metric):<21}" for metric in HEADLINE[:4])
            line = (
                f"  {name[:12]:<12}{entry['films']:>7}{entry['patients']:>9}{entry[negative]:>7}"
                f"{entry[positive]:>7}  {cells}"
            )
            if others:
                called = [with_fraction(entry.get("other", {}).get(kind)) for kind in KINDS]
                line += f"{entry.get('OTHER', 0):>7}  {called[0]:<36}{called[1]}"
            lines.append(line.rstrip())
    return "\n".join(lines)


def with_interval(entry: dict[str, Any], metric: str) -> str:
    """``metric`` of a group entry with its interval, ``0.912 [0.850-0.960]``, or ``n/a``."""
    value = entry[metric]
    if value is None:
        return "n/a"
    low_high = entry["ci"].get(metric)
    return f"{value:.3f}" + (f" [{low_high[0]:.3f}-{low_high[1]:.3f}]" if low_high else "")


def _group_order(name: str) -> tuple[int, int, str]:
    """Age bands in age order, other names alphabetically, ``unknown`` last."""
    bands = [band for _, band in AGE_BANDS]
    return (name == UNKNOWN, bands.index(name) if name in bands else len(bands), name)
