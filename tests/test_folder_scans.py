"""Folder scans never drop films silently (issue 11, case 6): one folder walk for every command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_manifest import kaggle_tree, write_image
from test_pipeline import assert_one_error_line, run_cli

from pneumoscan.cli import PREDICT_HEADER, collect_images
from pneumoscan.data.imageio import find_image_files
from pneumoscan.data.manifest import scan_dataset
from pneumoscan.errors import PneumoscanWarning


def test_class_and_split_folders_that_differ_in_case_are_merged(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "NORMAL" / "IM-0001-0001.png", 1)
    write_image(tmp_path / "train" / "normal" / "IM-0002-0001.png", 2)
    write_image(tmp_path / "Train" / "PNEUMONIA" / "person1_virus_1.png", 3)
    write_image(tmp_path / "train" / "pneumonia" / "person2_virus_1.png", 4)
    frame = scan_dataset(tmp_path)
    assert len(frame) == 4
    assert set(frame["split"]) == {"train"}
    assert frame.groupby("class_name").size().to_dict() == {"NORMAL": 2, "PNEUMONIA": 2}


@pytest.fixture()
def unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose ``train/NORMAL/batch2`` cannot be listed (as for a folder without read permission).

    The tests run as root, for whom ``chmod 000`` changes nothing, so listing it fails the way it does
    for anyone else: ``os.scandir`` raises PermissionError.
    """
    for i in range(3):
        write_image(tmp_path / "train" / "NORMAL" / f"IM-000{i}-0001.png", i)
        write_image(tmp_path / "train" / "PNEUMONIA" / f"person{i}_virus_1.png", 10 + i)
    locked = tmp_path / "train" / "NORMAL" / "batch2"
    write_image(locked / "IM-0009-0001.png", 9)
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return locked


def test_an_unreadable_subfolder_is_reported(unreadable: Path) -> None:
    with pytest.warns(PneumoscanWarning, match=rf"{unreadable}: folder cannot be read \(Permission denied\)"):
        frame = scan_dataset(unreadable.parents[2])
    assert len(frame) == 6


def test_predict_names_an_unreadable_subfolder(unreadable: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["predict", str(unreadable.parent)], capfd)
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header == PREDICT_HEADER and len(rows) == 3
    assert f"pneumoscan: warning: {unreadable}: folder cannot be read (Permission denied)" in err


def test_predict_follows_a_linked_subfolder_like_inspect(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_image(outside / "IM-0005-0001.png", 5)
    data = tmp_path / "data"
    write_image(data / "NORMAL" / "IM-0001-0001.png", 1)
    write_image(data / "PNEUMONIA" / "person1_virus_1.png", 2)
    (data / "NORMAL" / "linked").symlink_to(outside, target_is_directory=True)
    (data / "NORMAL" / "loop").symlink_to(data / "NORMAL", target_is_directory=True)  # a cycle ends

    listed = sorted(Path(p).name for p in scan_dataset(data)["path"])
    predicted = sorted(Path(p).name for p in collect_images([str(data)]))
    assert "IM-0005-0001.png" in listed
    assert predicted == listed
    assert len(list(find_image_files(data / "NORMAL"))) == len(set(find_image_files(data / "NORMAL")))


def test_a_folder_with_only_test_films_is_not_trained_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = kaggle_tree(tmp_path / "held_out", {"test": 6})
    code, _, err = run_cli(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"], capfd)
    assert code == 2
    assert_one_error_line(err, str(data), "only test splits")
    assert not (tmp_path / "run" / "model.safetensors").exists()

    code, out, err = run_cli(["inspect", str(data), "--quiet"], capfd)
    assert code == 0, err
    table = out.split("\n\n")[0]
    assert "test" in table and "train" not in table and "val" not in table
    assert "training: refused:" in out and "only test splits" in out
