"""A small, learnable synthetic chest-film task in the Kaggle layout, for tests and the demo.

Each image is a bright "body" with two dark "lungs"; PNEUMONIA images add a bright, soft
opacity inside one lung; OTHER images (another finding) fill the bottom of one lung with a flat,
sharp-edged "effusion", and ambiguous OTHER images add a faint soft opacity as well.  File names
follow the Kaggle conventions so patient-wise splitting is exercised: ``IM-NNNN-000K.jpeg`` for
NORMAL, ``personN_bacteria_K.jpeg`` for PNEUMONIA, with several images per patient.  It says
nothing about real radiographs.

Several synthetic "sites" differ in exposure (``brightness``, ``contrast``); a site can also be
written as a labels CSV with NIH-style names (``NNNNNNNN_NNN.png``, :func:`make_synthetic_csv_site`).
The data set's root and each split folder hold a :data:`MARKER` file, so that a model trained on it
records that it was (``ModelMeta.synthetic_data``) and ``pneumoscan predict`` warns on each use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from pneumoscan.classes import NORMAL, OTHER, OUTPUT_CLASSES, PNEUMONIA

MARKER = "PNEUMOSCAN-SYNTHETIC.txt"
_MARKER_TEXT = (
    "Made by pneumoscan.synthetic: drawn shapes, not radiographs. A model trained on these files\n"
    "learns a toy task and says nothing about real chest X-rays.\n"
)


def is_synthetic(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` was made by :func:`make_synthetic_dataset` (its root or one of its splits)."""
    return (Path(data_dir) / MARKER).is_file()


def synthetic_film(
    rng: np.random.Generator,
    pneumonia: bool,
    size: int = 96,
    brightness: float = 0.0,
    contrast: float = 1.0,
    other: Literal["", "clear", "ambiguous"] = "",
) -> np.ndarray:
    """One synthetic film as uint8 ``(size, size)``; ``brightness``/``contrast`` give a site its look.

    ``other``: an OTHER film's finding (``clear``: an effusion; ``ambiguous``: an effusion and a
    faint opacity).
    """
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    image = body.copy()
    for centre_x in (0.32, 0.68):
        cx, cy = centre_x + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02)
        lung = ((xx - cx) / 0.14) ** 2 + ((yy - cy) / 0.3) ** 2 < 1
        image[lung] = 0.2
        if other and centre_x == 0.68:
            image[lung & (yy > cy + 0.08)] = 0.6  # fluid with a flat top: the "effusion"
    if other == "ambiguous":
        cx, cy = 0.32 + rng.normal(0, 0.03), 0.5 + rng.uniform(-0.15, 0.15)
        image += 0.2 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.06**2)))
    if pneumonia:
        cx = rng.choice([0.32, 0.68]) + rng.normal(0, 0.03)
        cy = 0.5 + rng.uniform(-0.15, 0.15)
        image += 0.45 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.06**2)))
    image += rng.normal(0, 0.04, image.shape)
    if brightness or contrast != 1.0:
        image = 0.5 + (image - 0.5) * contrast + brightness
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_synthetic_dataset(
    root: str | Path,
    per_class: dict[str, int] | None = None,
    images_per_patient: int = 2,
    size: int = 96,
    seed: int = 0,
    brightness: float = 0.0,
    contrast: float = 1.0,
    other: dict[str, int] | None = None,
) -> Path:
    """Write ``root/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg`` and return ``root``.

    ``per_class`` maps split name to images per class (default ``{"train": 60, "test": 20}``);
    ``other`` maps split name to OTHER films (``OTHER-IM-NNNN-000K.jpeg``, clear findings), none by default.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    patient = 1
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(_MARKER_TEXT)
    for split, count in (per_class or {"train": 60, "test": 20}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / MARKER).write_text(_MARKER_TEXT)
        for label in OUTPUT_CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if i % images_per_patient == 0:
                    patient += 1
                k = i % images_per_patient + 1
                name = (
                    f"IM-{patient:04d}-{k:04d}.jpeg"
                    if label == NORMAL
                    else f"person{patient}_bacteria_{k}.jpeg"
                )
                pixels = synthetic_film(rng, label == PNEUMONIA, size, brightness, contrast)
                Image.fromarray(pixels).convert("RGB").save(folder / name, quality=95)
    other_rng = np.random.default_rng(seed + 1000)  # OTHER films leave the other films as they were
    for split, count in (other or {}).items():
        folder = root / split / OTHER
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            number, k = 9000 + patient + i // images_per_patient, i % images_per_patient + 1
            name = f"{OTHER}-IM-{number:04d}-{k:04d}.jpeg"
            pixels = synthetic_film(other_rng, False, size, brightness, contrast, other="clear")
            Image.fromarray(pixels).convert("RGB").save(folder / name, quality=95)
        patient += count
    return root


def make_synthetic_csv_site(
    root: str | Path,
    per_class: int = 40,
    images_per_patient: int = 2,
    size: int = 96,
    seed: int = 1,
    brightness: float = -0.15,
    contrast: float = 0.7,
    other: int = 0,
    ambiguous: int = 0,
) -> Path:
    """Write a site as ``root/images/NNNNNNNN_NNN.png`` films listed in ``root/labels.csv``; return the CSV.

    The CSV has NIH's columns (``file,label,patient,view,age,sex``); the default look is darker and
    flatter than :func:`make_synthetic_dataset`'s. ``other`` OTHER films, the last ``ambiguous`` of
    them with ``opacity`` 1, one per patient, add an ``opacity`` column (as in NIH's OTHER films).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["file,label,patient,view,age,sex"]
    for index in range(2 * per_class):
        label = OUTPUT_CLASSES[index % 2]
        patient = 10_000 + index // (2 * images_per_patient) * 2 + index % 2
        name = f"images/{patient:08d}_{index:03d}.png"
        pixels = synthetic_film(rng, label == PNEUMONIA, size, brightness, contrast)
        Image.fromarray(pixels).save(root / name)
        view, age, sex = ("PA", "AP")[index % 3 == 0], 20 + index % 60, "MF"[index % 2]
        lines.append(f"{name},{label},{patient:08d},{view},{age},{sex}")
    if other:
        lines = [f"{line},0" if index else f"{line},opacity" for index, line in enumerate(lines)]
        other_rng = np.random.default_rng(seed + 1000)
        for index in range(other):
            unclear = index >= other - ambiguous
            patient, name = 50_000 + index, f"images/{50_000 + index:08d}_000.png"
            kind: Literal["clear", "ambiguous"] = "ambiguous" if unclear else "clear"
            pixels = synthetic_film(other_rng, False, size, brightness, contrast, other=kind)
            Image.fromarray(pixels).save(root / name)
            age, sex = 30 + index % 50, "MF"[index % 2]
            lines.append(f"{name},{OTHER},{patient:08d},PA,{age},{sex},{int(unclear)}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"
