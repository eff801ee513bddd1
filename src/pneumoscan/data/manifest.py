"""List a data folder in the Kaggle layout into a pandas DataFrame manifest.

Accepted layouts (folder names in any case)::

    ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*   # the Kaggle layout; other split names are kept as-is
    ROOT/{NORMAL,PNEUMONIA}/*                    # one split, named after ROOT

Columns: ``path`` (str), ``split``, ``label`` (0 = NORMAL, 1 = PNEUMONIA), ``class_name``,
``patient_id`` (from ``personN_...`` / ``IM-NNNN-...`` file names, else the file stem).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan.data.imageio import find_image_files
from pneumoscan.errors import DataError

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
COLUMNS = ["path", "split", "label", "class_name", "patient_id"]
_PATIENT_PATTERNS = (re.compile(r"^(person\d+)_", re.IGNORECASE), re.compile(r"^(.*?IM-\d+)-", re.IGNORECASE))


def patient_id(file_name: str) -> str:
    """Patient key of a Kaggle file name (``person12_virus_3.jpeg`` -> ``person12``)."""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return match.group(1)
    return Path(file_name).stem


def _class_dirs(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.upper() in CLASS_NAMES:
            found[CLASS_NAMES.index(child.name.upper())] = child
    return found


def scan_dataset(root: str | Path) -> pd.DataFrame:
    """List every image under ``root``; raises :class:`DataError` if the layout is not recognised."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(
            f"{root}: not a folder; pass a folder with NORMAL/ and PNEUMONIA/ (or train/ val/ test/)"
        )
    splits = {root.name.lower(): _class_dirs(root)} if _class_dirs(root) else {}
    if not splits:
        for child in sorted(root.iterdir()):
            if child.is_dir() and _class_dirs(child):
                splits[child.name.lower()] = _class_dirs(child)
    if not splits:
        raise DataError(
            f"{root}: no NORMAL/ or PNEUMONIA/ folders found; expected ROOT/train/NORMAL/*.jpeg "
            "(Kaggle layout) or ROOT/NORMAL/*.jpeg"
        )
    rows = [
        (str(path), split, label, CLASS_NAMES[label], patient_id(path.name))
        for split, classes in splits.items()
        for label, folder in classes.items()
        for path in sorted(find_image_files(folder))
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        raise DataError(f"{root}: no image files (.jpeg/.jpg/.png/.dcm) in its class folders")
    return frame


def require_both_classes(frame: pd.DataFrame, what: str) -> None:
    """Raise :class:`DataError` unless ``frame`` has images of both classes."""
    present = set(frame["label"].unique())
    missing = [CLASS_NAMES[label] for label in (0, 1) if label not in present]
    if missing:
        raise DataError(f"{what}: no {' or '.join(missing)} images; a classifier needs both classes")


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

    Patients are shuffled with ``seed`` within each class and moved to validation until the class
    holds ``val_fraction`` of its images, so no patient is in both splits and both classes keep their
    proportion.
    """
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["split"] = "train"
    patient_label = out.groupby("patient_id")["label"].agg(lambda s: int(s.mode().iloc[0]))
    for label in (0, 1):
        patients = np.array(sorted(patient_label[patient_label == label].index))
        rng.shuffle(patients)
        sizes = out[out["label"] == label].groupby("patient_id").size()
        goal = val_fraction * sizes.sum()
        taken, chosen = 0, []
        for patient in patients:
            if taken >= goal:
                break
            chosen.append(patient)
            taken += int(sizes.get(patient, 0))
        out.loc[out["patient_id"].isin(chosen), "split"] = "val"
    return out


def training_pool(frame: pd.DataFrame, val_fraction: float, min_val_images: int, seed: int) -> pd.DataFrame:
    """Choose the train/val images of a scanned data set.

    Uses ``train``/``val`` folders when ``val`` has at least ``min_val_images`` images of both classes;
    otherwise merges every non-test split (or the only split) and re-splits by patient
    (:func:`patient_split`).
    """
    single = frame["split"].nunique() == 1
    pool = frame if single else frame[~frame["split"].str.startswith("test")]
    if pool.empty:
        raise DataError("no training images: the data folder has only test splits")
    val = pool[pool["split"] == "val"]
    if len(val) >= min_val_images and val["label"].nunique() == 2 and (pool["split"] == "train").any():
        return pool[pool["split"].isin(["train", "val"])].reset_index(drop=True)
    return patient_split(pool, val_fraction, seed).reset_index(drop=True)


def evaluation_split(frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Images to evaluate: the named split, else ``test`` if present, else the only split."""
    names = sorted(frame["split"].unique())
    if split is None:
        split = "test" if "test" in names else names[0] if len(names) == 1 else None
        if split is None:
            raise DataError(f"several splits ({', '.join(names)}) and no test/; choose one with --split")
    chosen = frame[frame["split"] == split.lower()]
    if chosen.empty:
        raise DataError(f"no split {split!r}; the data folder has {', '.join(names)}")
    return chosen.reset_index(drop=True)
