"""List data sources (Kaggle-layout folders and labels CSVs) into one pandas DataFrame manifest.

Accepted folder layouts (folder names in any case; ``NORMAL/`` and ``normal/`` side by side are
listed together, as are ``Train/`` and ``train/``)::

    ROOT/{train,val,test}/{NORMAL,PNEUMONIA,OTHER}/*   # the Kaggle layout; other split names kept as-is
    ROOT/{NORMAL,PNEUMONIA,OTHER}/*                    # one split, named after ROOT

The class folders are the film classes of :mod:`pneumoscan.classes` (``OTHER/``: another finding,
not pneumonia; optional). Every film has its ``class_name`` and its ``label``, the pneumonia target
(0/1; OTHER films are 0), and ``ambiguous`` (True for an OTHER film a labels CSV marks with
``opacity`` 1; folder films are never ambiguous).

A labels CSV (:mod:`pneumoscan.data.labels_csv`) lists films anywhere, with optional patient, site,
split, view, age and sex columns; its split defaults to the CSV's file name (``test.csv`` is a test
split).

:func:`scan_dataset` lists one folder (columns :data:`COLUMNS`); :func:`scan_sources` lists several
sources with the columns of :data:`SOURCE_COLUMNS`: every film carries its ``site`` (default: the
folder's name, or its parent's when the folder is a split such as ``train/``; for a CSV its folder's
name unless it has a site column) and its ``patient_id`` is prefixed with the site, so two sites never
share a patient. Unknown ``view``/``sex`` are empty strings, unknown ``age`` NaN.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.classes import (
    FILM_CLASS_NAMES,
    FILM_CLASSES,
    OUTPUT_CLASSES,
    POSITIVE,
    ambiguous_of,
    film_classes_of,
    target_of,
)
from pneumoscan.data.imageio import find_image_files
from pneumoscan.data.labels_csv import read_labels_csv
from pneumoscan.errors import DataError, warn

COLUMNS = ["path", "split", "label", "class_name", "patient_id", "ambiguous"]
SOURCE_COLUMNS = [*COLUMNS, "site", "view", "sex", "age", "source"]
SPLIT_NAMES = ("train", "val", "test")
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(.*?IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(\d{8})_\d{3}\."),  # NIH ChestX-ray14: 00000013_005.png
)


def patient_id(file_name: str) -> str:
    """Patient key of a file name: ``person12_virus_3.jpeg`` -> ``person12``, ``00000013_005.png`` (NIH) ->
    ``00000013``."""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return match.group(1)
    return Path(file_name).stem


def _subfolders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` (links followed), sorted; an unreadable folder gives a warning."""
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError as exc:
        warn(f"{folder}: folder cannot be read ({exc.strerror or exc}); its images are skipped")
        return []


def _class_dirs(folder: Path) -> dict[str, list[Path]]:
    """Class folders of ``folder`` by film class; ``NORMAL/`` and ``normal/`` are both kept."""
    found: dict[str, list[Path]] = {}
    for child in _subfolders(folder):
        if child.name.upper() in FILM_CLASS_NAMES:
            found.setdefault(child.name.upper(), []).append(child)
    return found


def _class_folders() -> str:
    """``NORMAL/, PNEUMONIA/ or OTHER/`` for error messages."""
    names = [f"{name}/" for name in FILM_CLASS_NAMES]
    return ", ".join(names[:-1]) + f" or {names[-1]}"


def scan_dataset(root: str | Path) -> pd.DataFrame:
    """List every image under the folder ``root``; raises :class:`DataError` if its layout is unknown."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(
            f"{root}: not a folder; pass a folder with {' and '.join(f'{n}/' for n in OUTPUT_CLASSES)} "
            "(or train/ val/ test/)"
        )
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"{root}: data folder cannot be read; check its permissions")
    splits: dict[str, dict[str, list[Path]]] = {}
    if _class_dirs(root):
        splits[root.name.lower()] = _class_dirs(root)
    else:
        for child in _subfolders(root):
            for label, folders in _class_dirs(child).items():
                splits.setdefault(child.name.lower(), {}).setdefault(label, []).extend(folders)
    if not splits:
        raise DataError(
            f"{root}: no {_class_folders()} folders found; expected ROOT/train/NORMAL/*.jpeg "
            "(Kaggle layout) or ROOT/NORMAL/*.jpeg"
        )
    found = [
        (path, split, name, folder)
        for split, classes in splits.items()
        for name in FILM_CLASS_NAMES
        for folder in classes.get(name, [])
        for path in sorted(find_image_files(folder))
    ]
    _refuse_two_labels(found)
    rows = [
        (str(path), split, target_of(name), name, patient_id(path.name), False)
        for path, split, name, _ in found
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        raise DataError(f"{root}: no image files (.jpeg/.jpg/.png/.dcm) in its class folders")
    return frame


def _refuse_two_labels(found: list[tuple[Path, str, str, Path]]) -> None:
    """Refuse a file reached (through a link) from two class folders of different labels.

    Files are compared by their resolved path, so a link from a class folder to the data root, which
    would list every film of the other class under this one too, is one line naming both folders.
    """
    first: dict[str, tuple[str, Path]] = {}
    for path, _, label, folder in found:
        real = os.path.realpath(path)
        label_before, folder_before = first.setdefault(real, (label, folder))
        if label_before != label:
            raise DataError(
                f"{real}: reached from two class folders, {folder_before} and {folder} (through a link?); "
                "one file cannot be both; remove the link or the copy from the wrong class folder"
            )


def default_site(source: str | Path) -> str:
    """The site name of a source: a folder's name (its parent's for a split folder), a CSV's folder's name."""
    path = Path(os.path.abspath(source))
    folder = path.parent if path.suffix.lower() == ".csv" or path.name.lower() in SPLIT_NAMES else path
    return folder.name or "data"


def _scan_csv(source: Path, site: str) -> pd.DataFrame:
    rows = read_labels_csv(source)
    names = rows["path"].map(lambda p: Path(p).name)
    patients = rows["patient"].where(rows["patient"] != "", names.map(patient_id))
    return pd.DataFrame(
        {
            "path": rows["path"],
            "split": rows["split"].str.lower().where(rows["split"] != "", source.stem.lower()),
            "label": rows["label"],
            "class_name": rows["class_name"],
            "patient_id": patients,
            "ambiguous": rows["ambiguous"],
            "site": rows["site"].where(rows["site"] != "", site),
            "view": rows["view"].str.upper(),
            "sex": rows["sex"].str.upper(),
            "age": rows["age"],
        }
    )


def _scan_source(source: str | Path) -> pd.DataFrame:
    path = Path(source)
    site = default_site(path)
    if path.suffix.lower() == ".csv":
        frame = _scan_csv(path, site)
    else:
        frame = scan_dataset(path).assign(site=site, view="", sex="", age=np.nan)
    return frame.assign(source=str(source))


def scan_sources(sources: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """List every film of every source (a data folder or a labels CSV) with its site.

    Two sources whose default site names are the same (two folders both called ``data``) and a film
    listed by two sources are refused; give a CSV a ``site`` column to choose site names.
    """
    sources = [sources] if isinstance(sources, str | Path) else list(sources)
    if not sources:
        raise DataError("no data: pass a data folder or labels CSV (--data), or set data.sources")
    frames = [_scan_source(source) for source in sources]
    named: dict[str, str] = {}
    for source in sources:
        site = default_site(source)
        if named.setdefault(site, str(source)) != str(source) and Path(source).suffix.lower() != ".csv":
            raise DataError(
                f"{source}: its site name {site!r} is taken by {named[site]}; rename one folder "
                "(the site is the folder's name) or list its films in a labels CSV with a site column"
            )
    frame = pd.concat(frames, ignore_index=True)
    where = frame["path"].map(os.path.abspath)
    repeated = frame[where.duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        others = repeated[where[repeated.index] == where[first.name]]["source"].tolist()
        raise DataError(
            f"{first['path']}: listed by two sources ({' and '.join(others)}); list each film once"
        )
    frame["site"] = frame["site"].astype(str)
    frame["patient_id"] = frame["site"] + "/" + frame["patient_id"].astype(str)
    return frame[SOURCE_COLUMNS]


def require_both_classes(frame: pd.DataFrame, what: str) -> None:
    """Raise :class:`DataError` unless ``frame`` has films of both pneumonia targets: PNEUMONIA
    films and films without pneumonia (NORMAL or OTHER)."""
    present = set(frame["label"].unique())
    missing = [
        " or ".join(c.name for c in FILM_CLASSES if c.target == target)
        for target in (0, 1)
        if target not in present
    ]
    if missing:
        raise DataError(
            f"{what}: no {' or '.join(missing)} images; a classifier needs both classes "
            f"({POSITIVE} and films without it); a labels CSV's site column can join its films to "
            "another site"
        )


def strata(frame: pd.DataFrame) -> pd.Series:
    """The stratum of each film for splitting: its class name, ambiguous OTHER films apart."""
    names = film_classes_of(frame)
    return names.where(~ambiguous_of(frame), names + " (ambiguous)")


def content_hashes(paths: pd.Series) -> pd.Series:
    """SHA-1 of each file's bytes (unreadable files get an empty string)."""

    def digest(path: str) -> str:
        try:
            return hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()
        except OSError:
            return ""

    return paths.map(digest)


def cross_split_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Groups of identical files (by content) found in more than one split."""
    hashed = frame.assign(sha1=content_hashes(frame["path"]))
    hashed = hashed[hashed["sha1"] != ""]
    spread = hashed.groupby("sha1")["split"].nunique()
    return hashed[hashed["sha1"].isin(spread[spread > 1].index)].sort_values(["sha1", "split"])


def patient_split(frame: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Re-split ``frame`` into ``train``/``val``, stratified by class and grouped by patient.

    Patients are shuffled with ``seed`` within each stratum (:func:`strata`: the film class, with
    ambiguous OTHER films apart) and moved to validation until the stratum holds ``val_fraction`` of
    its images, so no patient is in both splits and every class keeps its proportion.
    """
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["split"] = "train"
    stratum = strata(out)
    patient_stratum = stratum.groupby(out["patient_id"]).agg(lambda s: s.mode().iloc[0])
    for name in sorted(stratum.unique(), key=_stratum_order):
        patients = np.array(sorted(patient_stratum[patient_stratum == name].index))
        rng.shuffle(patients)
        sizes = out[stratum == name].groupby("patient_id").size()
        goal = val_fraction * sizes.sum()
        taken, chosen = 0, []
        for patient in patients:
            if taken >= goal:
                break
            chosen.append(patient)
            taken += int(sizes.get(patient, 0))
        out.loc[out["patient_id"].isin(chosen), "split"] = "val"
    return out


def _stratum_order(name: str) -> tuple[int, str]:
    """NORMAL and PNEUMONIA first (so that their splits are those of data without OTHER films)."""
    base = name.split(" ")[0]
    return (FILM_CLASS_NAMES.index(base) if base in FILM_CLASS_NAMES else len(FILM_CLASS_NAMES), name)


def _where(frame: pd.DataFrame) -> str:
    """How errors name a site: its name and where it came from."""
    if "site" not in frame:
        return "data"
    sources = f" ({', '.join(sorted(frame['source'].unique()))})" if "source" in frame else ""
    return f"site {frame['site'].iloc[0]!r}{sources}"


def _site_pool(frame: pd.DataFrame, val_fraction: float, min_val_images: int, seed: int) -> pd.DataFrame:
    where = _where(frame)
    pool = frame[~frame["split"].str.startswith("test")]
    if pool.empty:
        names = ", ".join(sorted(frame["split"].unique()))
        raise DataError(
            f"{where}: no training images: only test splits ({names}); pneumoscan never trains on "
            "test films, pass a folder with train/ (or NORMAL/ and PNEUMONIA/) instead"
        )
    require_both_classes(pool, where)
    val = pool[pool["split"] == "val"]
    if len(val) >= min_val_images and val["label"].nunique() == 2 and (pool["split"] == "train").any():
        chosen = pool[pool["split"].isin(["train", "val"])]
    else:
        chosen = patient_split(pool, val_fraction, seed)
    for split in ("train", "val"):
        require_both_classes(chosen[chosen["split"] == split], f"{where} ({split} split)")
    return chosen


def training_pool(frame: pd.DataFrame, val_fraction: float, min_val_images: int, seed: int) -> pd.DataFrame:
    """Choose the train/val images of a scanned data set, site by site.

    For each site (the whole frame when it has no ``site`` column), test splits (``test*``) are left
    out; its ``val`` split is used as-is when it has at least ``min_val_images`` images of both
    classes, otherwise every non-test split is merged and re-split by patient (:func:`patient_split`,
    each site with the same ``seed``). A site with one class, only test splits, or a split left
    without one class is refused, naming the site.
    """
    if "site" not in frame:
        return _site_pool(frame, val_fraction, min_val_images, seed).reset_index(drop=True)
    parts = [_site_pool(part, val_fraction, min_val_images, seed) for _, part in frame.groupby("site")]
    return pd.concat(parts).reset_index(drop=True)


def select_split(frame: pd.DataFrame, split: str | None, preferred: Sequence[str]) -> pd.DataFrame:
    """The rows of split ``split``; without one, the only split, else the first of ``preferred``
    present. :class:`DataError` naming the site (or the data folder) when there is none."""
    names = sorted(frame["split"].unique())
    where = _where(frame) if "site" in frame else "the data folder"
    if split is None:
        split = names[0] if len(names) == 1 else next((s for s in preferred if s in names), None)
        if split is None:
            wanted = " or ".join(f"{s}/" for s in preferred)
            raise DataError(
                f"{where}: several splits ({', '.join(names)}) and no {wanted}; choose one with --split"
            )
    chosen = frame[frame["split"] == split.lower()]
    if chosen.empty:
        raise DataError(f"{where}: no split {split!r}; it has {', '.join(names)}")
    return chosen


def evaluation_split(frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Images to evaluate, site by site: the named split, else ``test`` if present, else the only split."""
    if "site" not in frame:
        return select_split(frame, split, ("test",)).reset_index(drop=True)
    parts = [select_split(part, split, ("test",)) for _, part in frame.groupby("site", sort=False)]
    return pd.concat(parts).reset_index(drop=True)
