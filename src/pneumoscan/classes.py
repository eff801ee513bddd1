"""The class set: which kinds of film a data source may hold, and what each is to the model.

A film is ``NORMAL`` (no finding), ``PNEUMONIA``, or ``OTHER`` (abnormal, but not pneumonia:
effusion, cardiomegaly, a nodule, ...).  The model is a binary pneumonia classifier: one logit, whose
two outputs are :data:`OUTPUT_CLASSES` (index = target, ``PNEUMONIA`` last).  Each film class has the
pneumonia target it trains as (:attr:`FilmClass.target`): ``OTHER`` is a negative, target 0.

Film classes that are output classes (``NORMAL``, ``PNEUMONIA``) are measured with the binary
metrics; the others (``OTHER``) by the fraction of their films called each output (the fraction
called ``PNEUMONIA``).  An ``OTHER`` film may be *ambiguous* (e.g. its findings include an opacity
that can look exactly like pneumonia): training leaves ambiguous films out by default
(``data.ambiguous_other``) and evaluation reports them apart.

This module is the one place that names the classes; folders, labels CSVs, manifests, metrics,
reports and the model file's :attr:`~pneumoscan.model_file.ModelMeta.class_names` follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the functions take frames; the model file and engines need no pandas
    import pandas as pd


@dataclass(frozen=True)
class FilmClass:
    """One kind of film: its name (folder name and CSV label, any case), its pneumonia target, and
    its integer code in a labels CSV (None: named only)."""

    name: str
    target: int
    description: str
    code: str | None = None


NORMAL, PNEUMONIA, OTHER = "NORMAL", "PNEUMONIA", "OTHER"
FILM_CLASSES: tuple[FilmClass, ...] = (
    FilmClass(NORMAL, 0, "no finding", "0"),
    FilmClass(PNEUMONIA, 1, "pneumonia", "1"),
    FilmClass(OTHER, 0, "another finding, not pneumonia"),
)
FILM_CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in FILM_CLASSES)
OUTPUT_CLASSES: tuple[str, str] = (NORMAL, PNEUMONIA)  # the model's outputs, by target
POSITIVE = PNEUMONIA


def film_class(name: str) -> FilmClass | None:
    """The film class called ``name`` (any case, surrounding blanks ignored) or with that CSV code."""
    key = name.strip().upper()
    return next((c for c in FILM_CLASSES if key in (c.name, c.code)), None)


def target_of(name: str) -> int:
    """The pneumonia target (0/1) of the film class ``name``."""
    found = film_class(name)
    if found is None:
        raise KeyError(name)
    return found.target


def accepted_labels() -> str:
    """How a labels CSV may name the classes, for error messages: ``NORMAL, PNEUMONIA or OTHER (or 0/1)``."""
    names = ", ".join(FILM_CLASS_NAMES[:-1]) + f" or {FILM_CLASS_NAMES[-1]}"
    codes = "/".join(c.code for c in FILM_CLASSES if c.code is not None)
    return f"{names} (or {codes})"


def is_output_class(name: str) -> bool:
    """Whether films of class ``name`` are measured with the binary metrics (an output class)."""
    return name in OUTPUT_CLASSES


def film_classes_of(frame: pd.DataFrame) -> pd.Series:
    """Each film's class name: its ``class_name``, or the output class of its ``label`` without one."""
    if "class_name" in frame:
        return frame["class_name"].astype(str)
    return frame["label"].map(lambda target: OUTPUT_CLASSES[int(target)])


def ambiguous_of(frame: pd.DataFrame) -> np.ndarray:
    """Each film's ``ambiguous`` flag as booleans (all False without the column)."""
    if "ambiguous" not in frame:
        return np.zeros(len(frame), bool)
    return frame["ambiguous"].fillna(False).astype(bool).to_numpy()


def binary_films(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the films measured with the binary metrics (those of an output class)."""
    return film_classes_of(frame).map(is_output_class).to_numpy(dtype=bool)


def present_classes(names: pd.Series | list[str]) -> tuple[str, ...]:
    """The film classes among ``names``, in class-set order."""
    found = set(names)
    return tuple(name for name in FILM_CLASS_NAMES if name in found)


def trained_films(frame: pd.DataFrame, ambiguous_other: str) -> np.ndarray:
    """Mask of the films a training run uses (its training and validation films):
    all of them with ``ambiguous_other="negative"``, all but the ambiguous OTHER films with ``"exclude"``."""
    if ambiguous_other == "negative":
        return np.ones(len(frame), bool)
    return ~(ambiguous_of(frame) & (film_classes_of(frame) == OTHER).to_numpy())
