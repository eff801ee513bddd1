"""Listing a data folder, patient ids, the patient-wise split, duplicates and data-folder errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.data.manifest import (
    COLUMNS,
    cross_split_duplicates,
    patient_id,
    patient_split,
    require_both_classes,
    scan_dataset,
    training_pool,
)
from pneumoscan.errors import DataError


def write_image(path: Path, value: int = 128, size: int = 32) -> Path:
    """A small gray image whose pixels depend on ``value`` (so files with different values differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size), value, dtype=np.uint8)
    pixels[::4] = 255 - value
    Image.fromarray(pixels).save(path)
    return path


def fake_frame(patients_per_class: int, seed: int = 0) -> pd.DataFrame:
    """A manifest of many patients with 1-4 images each, NORMAL (label 0) and PNEUMONIA (label 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, prefix in ((0, "IM-"), (1, "person")):
        for p in range(patients_per_class * (1 + 2 * label)):  # three times as many pneumonia patients
            pid = f"{prefix}{p:04d}"
            for k in range(int(rng.integers(1, 5))):
                name = ["NORMAL", "PNEUMONIA"][label]
                rows.append((f"/d/{pid}_{k}.jpeg", "train", label, name, pid, False))
    return pd.DataFrame(rows, columns=COLUMNS)


# --- scanning ---------------------------------------------------------------------------------------


def test_kaggle_layout_any_case_and_suffix(tmp_path: Path) -> None:
    write_image(tmp_path / "Train" / "normal" / "IM-0001-0001.jpeg")
    write_image(tmp_path / "Train" / "normal" / "IM-0002-0001.JPG")
    write_image(tmp_path / "Train" / "Pneumonia" / "person1_virus_1.png")
    write_image(tmp_path / "Train" / "Pneumonia" / "person1_virus_2.jpg")
    write_image(tmp_path / "TEST" / "NORMAL" / "IM-0003-0001.jpeg")
    write_image(tmp_path / "TEST" / "PNEUMONIA" / "person2_bacteria_7.jpeg")
    (tmp_path / "Train" / "normal" / "notes.txt").write_text("not an image")
    (tmp_path / "Train" / "normal" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "Train" / "other").mkdir()

    frame = scan_dataset(tmp_path)

    assert list(frame.columns) == COLUMNS
    assert len(frame) == 6
    assert sorted(frame["split"].unique()) == ["test", "train"]
    by_name = frame.set_index(frame["path"].map(lambda p: Path(p).name))
    assert by_name.loc["IM-0002-0001.JPG", "label"] == 0
    assert by_name.loc["person1_virus_1.png", "class_name"] == "PNEUMONIA"
    assert by_name.loc["person1_virus_2.jpg", ["split", "label"]].tolist() == ["train", 1]
    assert by_name.loc["person2_bacteria_7.jpeg", "split"] == "test"
    assert by_name.loc["person1_virus_1.png", "patient_id"] == "person1"
    assert all(Path(p).is_file() for p in frame["path"])


def test_root_holding_class_folders_is_one_split_named_after_it(tmp_path: Path) -> None:
    root = tmp_path / "MyFilms"
    write_image(root / "NORMAL" / "a.png")
    write_image(root / "PNEUMONIA" / "b.png")
    write_image(root / "PNEUMONIA" / "nested" / "c.jpeg")  # sub-folders of a class folder are listed
    frame = scan_dataset(root)
    assert sorted(frame["label"]) == [0, 1, 1]
    assert set(frame["split"]) == {"myfilms"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("person12_virus_3.jpeg", "person12"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("PERSON7_virus_10.jpeg", "PERSON7"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-1427-0002.jpeg", "NORMAL2-IM-1427"),
        ("scan_0042.png", "scan_0042"),
        ("00000013_005.png", "00000013"),  # NIH ChestX-ray14
        ("00030805_000.jpeg", "00030805"),
    ],
)
def test_patient_id(name: str, expected: str) -> None:
    assert patient_id(name) == expected


# --- patient-wise split ------------------------------------------------------------------------------


def test_patient_split_keeps_patients_together_and_is_stratified() -> None:
    frame = fake_frame(100)
    out = patient_split(frame, 0.2, seed=1)

    assert len(out) == len(frame)
    assert out["path"].tolist() == frame["path"].tolist()
    assert (out["label"] == frame["label"]).all()
    assert set(out["split"]) == {"train", "val"}
    assert out.groupby("patient_id")["split"].nunique().max() == 1
    for label in (0, 1):
        share = (out.loc[out["label"] == label, "split"] == "val").mean()
        assert share == pytest.approx(0.2, abs=0.03), label
    val = out[out["split"] == "val"]
    assert val["label"].mean() == pytest.approx(frame["label"].mean(), abs=0.03)


def test_patient_split_depends_only_on_the_seed() -> None:
    frame = fake_frame(60)
    first = patient_split(frame, 0.25, seed=7)["split"]
    again = patient_split(frame, 0.25, seed=7)["split"]
    other = patient_split(frame, 0.25, seed=8)["split"]
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_patient_with_mixed_labels_stays_in_one_split() -> None:
    frame = fake_frame(30)
    frame.loc[frame.index[:3], "patient_id"] = "shared"
    frame.loc[frame.index[-3:], "patient_id"] = "shared"
    for seed in range(5):
        out = patient_split(frame, 0.3, seed)
        assert out.loc[out["patient_id"] == "shared", "split"].nunique() == 1


def kaggle_tree(root: Path, counts: dict[str, int]) -> Path:
    """``root/{split}/{NORMAL,PNEUMONIA}`` with ``counts[split]`` images per class, one per patient."""
    value = 0
    for split, count in counts.items():
        for cls, name in (("NORMAL", "IM-{:04d}-0001.png"), ("PNEUMONIA", "person{}_virus_1.png")):
            for _ in range(count):
                value += 1
                write_image(root / split / cls / name.format(value), value % 250)
    return root


def test_training_pool_merges_a_tiny_val_folder_and_resplits(tmp_path: Path) -> None:
    frame = scan_dataset(kaggle_tree(tmp_path, {"train": 20, "val": 2, "test": 3}))
    pool = training_pool(frame, val_fraction=0.25, min_val_images=10, seed=0)

    assert set(pool["path"]) == set(frame.loc[frame["split"] != "test", "path"])  # no test image
    assert set(pool["split"]) == {"train", "val"}
    assert len(pool[pool["split"] == "val"]) == pytest.approx(0.25 * 44, abs=2)  # not the 4 of val/
    for label in (0, 1):
        assert ((pool["split"] == "val") & (pool["label"] == label)).sum() >= 5


def test_training_pool_uses_a_big_enough_val_folder_as_is(tmp_path: Path) -> None:
    frame = scan_dataset(kaggle_tree(tmp_path, {"train": 12, "val": 5, "test": 3}))
    pool = training_pool(frame, val_fraction=0.25, min_val_images=10, seed=0)
    expected = frame[frame["split"] != "test"].sort_values("path")
    assert pool.sort_values("path")[["path", "split"]].values.tolist() == (
        expected[["path", "split"]].values.tolist()
    )


def test_training_pool_resplits_a_one_class_val_folder(tmp_path: Path) -> None:
    root = kaggle_tree(tmp_path, {"train": 12})
    for i in range(12):
        write_image(root / "val" / "NORMAL" / f"IM-9{i:03d}-0001.png", i)
    pool = training_pool(scan_dataset(root), val_fraction=0.25, min_val_images=10, seed=0)
    assert pool.loc[pool["split"] == "val", "label"].nunique() == 2


def test_training_pool_refuses_test_only_data(tmp_path: Path) -> None:
    root = tmp_path / "data"
    kaggle_tree(root, {"test": 2, "test2": 2})
    with pytest.raises(DataError, match="only test splits"):
        training_pool(scan_dataset(root), 0.2, 10, 0)


# --- duplicates ------------------------------------------------------------------------------------


def test_cross_split_duplicates_by_content(tmp_path: Path) -> None:
    root = kaggle_tree(tmp_path, {"train": 4, "test": 2})
    leaked = sorted((root / "train" / "PNEUMONIA").iterdir())[0]
    copy = shutil.copy(leaked, root / "test" / "PNEUMONIA" / "renamed.png")
    same_split = shutil.copy(leaked, root / "train" / "PNEUMONIA" / "person99_virus_1.png")
    frame = scan_dataset(root)

    dupes = cross_split_duplicates(frame)

    assert set(dupes["path"]) == {str(leaked), str(copy), str(same_split)}
    assert dupes["sha1"].nunique() == 1
    assert set(dupes["split"]) == {"train", "test"}
    (root / "test" / "PNEUMONIA" / "renamed.png").unlink()
    assert cross_split_duplicates(scan_dataset(root)).empty  # same-split copies alone are no leak


# --- errors ----------------------------------------------------------------------------------------


def test_a_link_that_puts_films_under_two_labels_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link from a class folder to the data root listed every PNEUMONIA film as NORMAL too."""
    root = tmp_path / "data"
    write_image(root / "NORMAL" / "IM-0001-0001.png", 10)
    film = write_image(root / "PNEUMONIA" / "person1_virus_1.png", 200)
    (root / "NORMAL" / "everything").symlink_to(root, target_is_directory=True)
    assert main(["inspect", str(root), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pneumoscan: error: {film}: reached from two class folders")
    assert f"{root / 'NORMAL'} and {root / 'PNEUMONIA'} (through a link?)" in line


def test_a_link_within_one_label_is_listed_once_per_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "NORMAL" / "IM-0001-0001.png", 10)
    write_image(root / "PNEUMONIA" / "person1_virus_1.png", 200)
    (root / "NORMAL" / "more").symlink_to(root / "NORMAL", target_is_directory=True)
    assert scan_dataset(root)["label"].tolist() == [0, 1]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: data folder not found"):
        scan_dataset(tmp_path / "nowhere")


def test_file_instead_of_folder(tmp_path: Path) -> None:
    path = write_image(tmp_path / "film.png")
    with pytest.raises(DataError, match=r"film.png: not a folder"):
        scan_dataset(path)


def test_no_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "healthy" / "a.png")
    write_image(tmp_path / "loose.png")
    with pytest.raises(DataError, match="no NORMAL/, PNEUMONIA/ or OTHER/ folders"):
        scan_dataset(tmp_path)


def test_empty_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train" / "NORMAL").mkdir(parents=True)
    (tmp_path / "train" / "PNEUMONIA").mkdir(parents=True)
    (tmp_path / "train" / "PNEUMONIA" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        scan_dataset(tmp_path)


def test_require_both_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "NORMAL" / "IM-0001-0001.png")
    (tmp_path / "PNEUMONIA").mkdir()
    frame = scan_dataset(tmp_path)
    with pytest.raises(DataError, match=r"my data: no PNEUMONIA images"):
        require_both_classes(frame, "my data")
    write_image(tmp_path / "PNEUMONIA" / "person1_virus_1.png")
    require_both_classes(scan_dataset(tmp_path), "my data")


def test_training_on_one_class_data_is_one_line_exit_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "only_normal"
    for i in range(12):
        write_image(data / "train" / "NORMAL" / f"IM-{i:04d}-0001.png", i)
    code = main(["train", "--data", str(data / "train"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capfd.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("pneumoscan: error: ")
    assert str(data / "train") in err and "PNEUMONIA" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
