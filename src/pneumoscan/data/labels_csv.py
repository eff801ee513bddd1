"""Read a labels CSV: a data source for films that are not in the Kaggle folder layout.

Columns (header names in any case): ``path`` (alias ``file``) and ``label`` are required; ``patient``
(alias ``patient_id``), ``site``, ``split``, ``view``, ``age``, ``sex`` and ``opacity`` are optional,
other columns are ignored. Paths are relative to the CSV's folder (absolute paths are kept). Labels
are the film classes of :mod:`pneumoscan.classes` in any case -- NORMAL, PNEUMONIA or OTHER (another
finding, not pneumonia) -- or 0/1 for NORMAL/PNEUMONIA. ``opacity`` (0/1, empty for 0) marks an
OTHER film as ambiguous (its findings may look like pneumonia); it means nothing for other classes.
A wrong CSV is refused with one line naming the CSV and its line number (the header is line 1): a
missing column, an empty path, an unknown label or opacity value, a film listed twice or a film
that does not exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.classes import OTHER, accepted_labels, film_class, target_of
from pneumoscan.data.csv_file import read_user_csv
from pneumoscan.errors import DataError

REQUIRED = ("path", "label")
OPTIONAL = ("patient", "site", "split", "view", "age", "sex", "opacity")
_ALIASES = {"file": "path", "patient_id": "patient"}
_EXPECTED = "expected a header with path,label and optionally patient,site,split,view,age,sex,opacity"
_FLAGS = {"": False, "0": False, "1": True}


def read_labels_csv(csv_path: str | Path) -> pd.DataFrame:
    """The rows of a labels CSV, checked, with ``path`` resolved against the CSV's folder.

    Columns: ``path``, ``label`` (the pneumonia target, 0/1), ``class_name`` (NORMAL, PNEUMONIA or
    OTHER), ``ambiguous`` (an OTHER film with ``opacity`` 1), ``line`` (line number in the CSV) and
    every other optional column (empty string where absent; ``age`` as float, NaN where unknown).
    """
    csv_path = Path(csv_path)
    raw = read_user_csv(csv_path, "labels CSV", _EXPECTED)
    raw.columns = [_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in raw.columns]
    missing = [name for name in REQUIRED if name not in raw.columns]
    if missing:
        found = ",".join(raw.columns) or "nothing"
        raise DataError(f"{csv_path}: no {' or '.join(missing)} column (found {found}); {_EXPECTED}")
    if raw.empty:
        raise DataError(f"{csv_path}: no rows below the header; list one film per line")
    frame = raw[[name for name in (*REQUIRED, *OPTIONAL) if name in raw.columns]].copy()
    for name in OPTIONAL:
        frame[name] = frame[name].str.strip() if name in frame else ""
    frame["line"] = np.arange(len(frame)) + 2
    frame["class_name"] = _classes(frame, csv_path)
    frame["label"] = frame["class_name"].map(target_of)
    frame["ambiguous"] = _opacity(frame, csv_path) & (frame["class_name"] == OTHER)
    frame["path"] = _paths(frame, csv_path)
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    return frame.reset_index(drop=True)


def _classes(frame: pd.DataFrame, csv_path: Path) -> pd.Series:
    classes = frame["label"].map(film_class)
    bad = frame[classes.isna()]
    if not bad.empty:
        row = bad.iloc[0]
        raise DataError(
            f"{csv_path} line {row['line']}: unknown label {row['label']!r}; "
            f"use {accepted_labels()} ({len(bad)} rows in all)"
        )
    return classes.map(lambda found: found.name)


def _opacity(frame: pd.DataFrame, csv_path: Path) -> pd.Series:
    flags = frame["opacity"].map(_FLAGS)
    bad = frame[flags.isna()]
    if not bad.empty:
        row = bad.iloc[0]
        raise DataError(
            f"{csv_path} line {row['line']}: opacity {row['opacity']!r}; use 1 (an ambiguous OTHER film) "
            f"or 0 ({len(bad)} rows in all)"
        )
    return flags.astype(bool)


def _paths(frame: pd.DataFrame, csv_path: Path) -> pd.Series:
    given = frame["path"].str.strip()
    empty = frame[given == ""]
    if not empty.empty:
        raise DataError(f"{csv_path} line {empty['line'].iloc[0]}: empty path; name the film's file")
    base = csv_path.parent
    paths = given.map(lambda name: os.path.normpath(base / name))
    repeated = frame[paths.duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        again = repeated[paths[repeated.index] == paths[first.name]].iloc[1]
        raise DataError(
            f"{csv_path} line {again['line']}: {again['path']} is listed twice (also line {first['line']}); "
            "keep one row per film"
        )
    absent = frame[~paths.map(os.path.isfile)]
    if not absent.empty:
        more = f" (and {len(absent) - 1} more rows)" if len(absent) > 1 else ""
        raise DataError(
            f"{csv_path} line {absent['line'].iloc[0]}: {absent['path'].iloc[0]} not found{more}; "
            f"paths are relative to the CSV's folder {base}"
        )
    return paths
