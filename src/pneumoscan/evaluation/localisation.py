"""``pneumoscan evaluate --boxes``: do the heat maps point where the readers saw the opacity?

Over the PNEUMONIA films the readers boxed (:mod:`pneumoscan.data.boxes_csv`), each film's map
(:func:`pneumoscan.explain.explain_file`, the model's own method) is compared with its boxes, mapped
into the model's input through the same crop and resize as the film
(:meth:`pneumoscan.preprocess.ModelView.box_to_model`):

* **pointing game**: the map's peak (the centre of its highest pixel) lies inside a box; the hit
  rate comes with a 95 % Wilson score interval;
* **mass in boxes**: the share of the map's total inside the boxes, averaged over the films.

The **chance baseline** is a uniform map over the model's view: its peak is a random point, which
lands in a box with probability (area of the boxes inside the view) / (area of the view), and the
same share of its mass lies in the boxes.  It is computed exactly (the union of overlapping boxes
counted once), not sampled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscan.data.boxes_csv import check_inside
from pneumoscan.errors import ImageReadError, InputRefusedError
from pneumoscan.explain import Explanation, explain_file
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import ModelView

Z_95 = 1.959963984540054


@dataclass
class Localisation:
    """Per-film measures (``films``), the boxes they were measured against, and the summary ``metrics``."""

    films: pd.DataFrame
    boxes: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def boxes_of(self, path: str) -> list[tuple[float, float, float, float]]:
        """The ``(x, y, width, height)`` boxes of one measured film, in its own pixels."""
        rows = self.boxes[self.boxes["path"] == os.path.abspath(path)]
        return [tuple(row) for row in rows[["x", "y", "width", "height"]].to_numpy(dtype=float)]


def box_coverage(view: ModelView, boxes: np.ndarray) -> np.ndarray:
    """The share of each model-input pixel ``(S, S)`` covered by the film ``boxes`` ``(k, 4)`` (x, y,
    width, height), exactly: overlapping boxes count once, parts outside the model's view not at all."""
    size = view.size
    mapped = np.array([view.box_to_model(*box) for box in boxes], dtype=np.float64).reshape(-1, 4)
    edges_x = np.unique(np.concatenate([np.arange(size + 1), mapped[:, 0], mapped[:, 2]]))
    edges_y = np.unique(np.concatenate([np.arange(size + 1), mapped[:, 1], mapped[:, 3]]))
    mid_x, mid_y = (edges_x[:-1] + edges_x[1:]) / 2, (edges_y[:-1] + edges_y[1:]) / 2
    inside = np.zeros((len(mid_y), len(mid_x)), dtype=bool)
    for x0, y0, x1, y1 in mapped:
        inside |= ((mid_y >= y0) & (mid_y < y1))[:, None] & ((mid_x >= x0) & (mid_x < x1))[None, :]
    areas = np.outer(np.diff(edges_y), np.diff(edges_x)) * inside
    coverage = np.zeros((size, size))
    np.add.at(coverage, (mid_y.astype(int)[:, None], mid_x.astype(int)[None, :]), areas)
    return coverage


def measure(explanation: Explanation, boxes: np.ndarray) -> dict[str, float | bool]:
    """Pointing-game hit, mass in boxes and the chance baseline of one film's map and its boxes."""
    heat = explanation.heatmap.astype(np.float64)
    coverage = box_coverage(explanation.view, boxes)
    chance = float(coverage.sum() / coverage.size)
    total = heat.sum()
    if total <= 0:  # nothing raised the logit: no peak to point with
        return {"hit": False, "mass_in_boxes": 0.0, "chance": chance}
    row, col = np.unravel_index(int(heat.argmax()), heat.shape)
    view = explanation.view
    peak_x, peak_y = col + 0.5, row + 0.5
    hit = any(
        x0 <= peak_x < x1 and y0 <= peak_y < y1
        for x0, y0, x1, y1 in (view.box_to_model(*box) for box in boxes)
    )
    return {"hit": hit, "mass_in_boxes": float((heat * coverage).sum() / total), "chance": chance}


def localise(
    predictor: Predictor, films: Sequence[str], boxes: pd.DataFrame, csv_path: str | Path
) -> Localisation:
    """Measure the maps of ``films`` (PNEUMONIA films) against their ``boxes`` (from ``csv_path``).

    Films without boxes are counted, not measured; films that cannot be read or that the model
    refuses are counted and left out.  A box that reaches outside its film is refused
    (:class:`~pneumoscan.errors.DataError`).
    """
    by_film = {path: rows for path, rows in boxes.groupby("path")}
    rows: list[dict[str, Any]] = []
    counts = {"without_boxes": 0, "refused": 0, "unreadable": 0}
    for film in films:
        own = by_film.get(os.path.abspath(film))
        if own is None:
            counts["without_boxes"] += 1
            continue
        try:
            explanation = explain_file(predictor, film)
        except InputRefusedError:
            counts["refused"] += 1
            continue
        except ImageReadError:
            counts["unreadable"] += 1
            continue
        if explanation.prediction.refused:
            counts["refused"] += 1
            continue
        check_inside(own, explanation.view.film_height, explanation.view.film_width, csv_path)
        xywh = own[["x", "y", "width", "height"]].to_numpy(dtype=np.float64)
        rows.append(
            {"path": film, "probability": explanation.prediction.probability, **measure(explanation, xywh)}
        )
    table = pd.DataFrame(rows, columns=["path", "probability", "hit", "mass_in_boxes", "chance"])
    metrics = summarise(table, **counts)
    metrics["boxes"] = str(csv_path)
    metrics["method"] = predictor.meta.explain.model_dump()
    metrics["map"] = predictor.meta.explain.describe()
    return Localisation(table, boxes, metrics)


def summarise(
    table: pd.DataFrame, without_boxes: int = 0, refused: int = 0, unreadable: int = 0
) -> dict[str, Any]:
    """Hit rate with its interval, mean mass in boxes and the chance baseline over the measured films."""
    films, hits = len(table), int(table["hit"].sum())
    mass, chance = (
        round(float(table[name].mean()), 4) if films else None for name in ("mass_in_boxes", "chance")
    )
    return {
        "films": films,
        "hits": hits,
        "hit_rate": round(hits / films, 4) if films else None,
        "hit_rate_interval": [round(value, 4) for value in wilson_interval(hits, films)] if films else None,
        "mass_in_boxes": mass,
        "chance_hit_rate": chance,
        "chance_mass_in_boxes": chance,
        "pneumonia_films_without_boxes": without_boxes,
        "refused": refused,
        "unreadable": unreadable,
    }


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if trials == 0:
        return (math.nan, math.nan)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def format_localisation(metrics: dict[str, Any]) -> str:
    """The terminal summary of :func:`summarise`'s figures."""
    lines = [f"heat maps against the boxes of {metrics['boxes']} ({metrics['map']}):"]
    if metrics["films"]:
        low, high = metrics["hit_rate_interval"]
        lines += [
            f"  pointing game: map peak inside a box on {metrics['hits']} of {metrics['films']} "
            f"PNEUMONIA films, {metrics['hit_rate']:.1%} (95% CI {low:.1%}-{high:.1%}); "
            f"chance {metrics['chance_hit_rate']:.1%}",
            f"  map mass inside the boxes: {metrics['mass_in_boxes']:.1%}; "
            f"chance {metrics['chance_mass_in_boxes']:.1%}",
            "  (chance: a uniform map over the model's view, i.e. the boxes' share of the view's area)",
        ]
    else:
        lines.append("  no PNEUMONIA film with boxes was measured")
    notes = [
        f"{metrics['pneumonia_films_without_boxes']} PNEUMONIA films have no boxes",
        f"{metrics['refused']} were refused by the model",
        f"{metrics['unreadable']} could not be read",
    ]
    counts = ("pneumonia_films_without_boxes", "refused", "unreadable")
    said = [note for note, key in zip(notes, counts, strict=True) if metrics[key]]
    if said:
        lines.append(f"  not measured: {'; '.join(said)}")
    return "\n".join(lines)
