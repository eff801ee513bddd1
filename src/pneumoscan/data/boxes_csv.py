"""Read a boxes CSV: readers' rectangles around the opacities on PNEUMONIA films.

Columns (header names in any case): ``path``, ``x``, ``y``, ``width``, ``height``, the rectangle's
left, top and size in the film's own pixels; other columns are ignored.  A film may have several
rows; a film without rows has no box.  Paths are relative to the CSV's folder (absolute paths are
kept), as in a labels CSV.  A wrong CSV is refused with one line naming the CSV and its line number
(the header is line 1): a missing column, an empty path, a value that is not a number, a box of no
size or starting left of or above the film, or a film that is not in the data being measured.
Whether a box ends inside its film is checked when the film is read
(:func:`check_inside`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.data.csv_file import read_user_csv
from pneumoscan.errors import DataError

COLUMNS = ("path", "x", "y", "width", "height")
_EXPECTED = "expected a header with path,x,y,width,height (a box in the film's pixels per row)"


def read_boxes_csv(csv_path: str | Path, films: Iterable[str]) -> pd.DataFrame:
    """The boxes of a CSV, checked against ``films`` (the paths of the data being measured).

    Columns: ``path`` (absolute, normalised), ``x``, ``y``, ``width``, ``height`` (float) and ``line``.
    """
    csv_path = Path(csv_path)
    raw = read_user_csv(csv_path, "boxes CSV", _EXPECTED)
    raw.columns = [name.strip().lower() for name in raw.columns]
    missing = [name for name in COLUMNS if name not in raw.columns]
    if missing:
        found = ",".join(raw.columns) or "nothing"
        raise DataError(f"{csv_path}: no {' or '.join(missing)} column (found {found}); {_EXPECTED}")
    frame = raw[list(COLUMNS)].copy()
    frame["line"] = np.arange(len(frame)) + 2
    for name in COLUMNS[1:]:
        frame[name] = _numbers(frame, name, csv_path)
    _check_sizes(frame, csv_path)
    frame["path"] = _paths(frame, csv_path, films)
    return frame.reset_index(drop=True)


def check_inside(boxes: pd.DataFrame, film_height: int, film_width: int, csv_path: str | Path) -> None:
    """Refuse a box of one film that ends right of or below the film (``film_width`` x ``film_height``)."""
    outside = boxes[(boxes["x"] + boxes["width"] > film_width) | (boxes["y"] + boxes["height"] > film_height)]
    if not outside.empty:
        row = outside.iloc[0]
        raise DataError(
            f"{csv_path} line {row['line']}: box x={row['x']:g} y={row['y']:g} width={row['width']:g} "
            f"height={row['height']:g} reaches outside {row['path']} ({film_width}x{film_height} pixels); "
            "boxes are in the film's own pixels"
        )


def _numbers(frame: pd.DataFrame, name: str, csv_path: Path) -> pd.Series:
    values = pd.to_numeric(frame[name].str.strip(), errors="coerce")
    bad = frame[~np.isfinite(values)]
    if not bad.empty:
        row = bad.iloc[0]
        raise DataError(f"{csv_path} line {row['line']}: {name} {row[name]!r} is not a number; {_EXPECTED}")
    return values.astype(float)


def _check_sizes(frame: pd.DataFrame, csv_path: Path) -> None:
    bad = frame[(frame["width"] <= 0) | (frame["height"] <= 0) | (frame["x"] < 0) | (frame["y"] < 0)]
    if not bad.empty:
        row = bad.iloc[0]
        raise DataError(
            f"{csv_path} line {row['line']}: box x={row['x']:g} y={row['y']:g} width={row['width']:g} "
            f"height={row['height']:g} is empty or starts outside the film; "
            "boxes are in the film's own pixels"
        )


def _paths(frame: pd.DataFrame, csv_path: Path, films: Iterable[str]) -> pd.Series:
    given = frame["path"].str.strip()
    empty = frame[given == ""]
    if not empty.empty:
        raise DataError(f"{csv_path} line {empty['line'].iloc[0]}: empty path; name the film's file")
    base = csv_path.parent
    paths = given.map(lambda name: os.path.abspath(base / name))
    known = {os.path.abspath(film) for film in films}
    unknown = frame[~paths.isin(known)]
    if not unknown.empty:
        more = f" (and {unknown['path'].nunique() - 1} more films)" if unknown["path"].nunique() > 1 else ""
        raise DataError(
            f"{csv_path} line {unknown['line'].iloc[0]}: {unknown['path'].iloc[0]} is not a film of the data"
            f"{more}; paths are relative to the CSV's folder {base}"
        )
    return paths
