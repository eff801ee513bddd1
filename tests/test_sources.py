"""Several data sources in one manifest: folders and labels CSVs, sites, per-site patient-wise splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import WeightedRandomSampler

from pneumoscan.config import Config
from pneumoscan.data.datamodule import sampling_weights
from pneumoscan.data.manifest import SOURCE_COLUMNS, scan_sources, training_pool
from pneumoscan.errors import DataError, PneumoscanError
from pneumoscan.synthetic import make_synthetic_csv_site, make_synthetic_dataset


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Kaggle-layout folder ``kermany/`` and a labels-CSV site ``nih/labels.csv`` with another look."""
    base = tmp_path_factory.mktemp("sites")
    folder = make_synthetic_dataset(base / "kermany", {"train": 30, "test": 6}, size=32)
    return folder, make_synthetic_csv_site(base / "nih", per_class=20, size=32)


def write_csv(folder: Path, text: str, films: tuple[str, ...] = ("a.png", "b.png", "c.png")) -> Path:
    """A labels CSV in ``folder`` (with empty stand-in files for ``films``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in films:
        (folder / name).write_bytes(b"")
    (folder / "labels.csv").write_text(text)
    return folder / "labels.csv"


# --- the manifest ------------------------------------------------------------------------------------


def test_folder_and_csv_sources_in_one_manifest(two_sites: tuple[Path, Path]) -> None:
    folder, csv = two_sites
    frame = scan_sources([folder, str(csv)])

    assert list(frame.columns) == SOURCE_COLUMNS
    assert len(frame) == 2 * 36 + 40
    assert frame.groupby("site").size().to_dict() == {"kermany": 72, "nih": 40}
    nih = frame[frame["site"] == "nih"]
    assert set(nih["split"]) == {"labels"}  # a CSV without split column: one split named after it
    assert nih["path"].map(lambda p: Path(p).is_file()).all()
    assert nih["patient_id"].str.fullmatch(r"nih/\d{8}").all()
    assert set(nih["view"]) == {"PA", "AP"} and set(nih["sex"]) == {"M", "F"}
    assert nih["age"].between(20, 80).all()
    kermany = frame[frame["site"] == "kermany"]
    assert kermany["patient_id"].str.match(r"kermany/(IM-|person)").all()
    assert (kermany["view"] == "").all() and kermany["age"].isna().all()
    assert (frame["class_name"] == frame["label"].map({0: "NORMAL", 1: "PNEUMONIA"})).all()


def test_csv_options(tmp_path: Path) -> None:
    """``file`` for ``path``, labels in any case or 0/1, a site and split column, absolute paths."""
    outside = tmp_path / "elsewhere" / "d.png"
    outside.parent.mkdir()
    outside.write_bytes(b"")
    csv = write_csv(
        tmp_path / "hospital",
        "File,Label,Site,Split,Patient\n"
        "a.png,normal,north,train,p1\n"
        "b.png, Pneumonia ,north,train,\n"
        "c.png,0,south,test,p1\n"
        f"{outside},1,,,p9\n",
    )
    frame = scan_sources([csv])
    assert frame["label"].tolist() == [0, 1, 0, 1]
    assert frame["site"].tolist() == ["north", "north", "south", "hospital"]
    assert frame["split"].tolist() == ["train", "train", "test", "labels"]
    assert frame["patient_id"].tolist() == ["north/p1", "north/b", "south/p1", "hospital/p9"]
    assert frame["path"].iloc[3] == str(outside)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\na.png,NORMAL\nb.png,covid\n", r"labels.csv line 3: unknown label 'covid'"),
        (
            "path,label\na.png,NORMAL\nb.png,PNEUMONIA\na.png,1\n",
            r"line 4: a.png is listed twice \(also line 2\)",
        ),
        ("path,label\na.png,NORMAL\nmissing.png,1\n", r"line 3: missing.png not found"),
        ("path,label\na.png,NORMAL\n,1\n", r"line 3: empty path"),
        ("path,diagnosis\na.png,NORMAL\n", r"labels.csv: no label column \(found path,diagnosis\)"),
        ("image,label\na.png,NORMAL\n", r"labels.csv: no path column"),
        ("path,label\n", r"labels.csv: no rows below the header"),
        ("", r"labels.csv: the CSV is empty"),
    ],
)
def test_bad_labels_csv_is_one_line_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    csv = write_csv(tmp_path, text)
    with pytest.raises(DataError, match=message) as caught:
        scan_sources([csv])
    assert "\n" not in str(caught.value)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.csv: labels CSV not found"):
        scan_sources([tmp_path / "nowhere.csv"])


def test_a_one_class_site_is_refused_naming_it(tmp_path: Path, two_sites: tuple[Path, Path]) -> None:
    csv = write_csv(tmp_path / "clinic", "path,label\na.png,NORMAL\nb.png,NORMAL\nc.png,NORMAL\n")
    frame = scan_sources([two_sites[0], csv])
    with pytest.raises(DataError, match=r"site 'clinic' \(.*labels.csv\): no PNEUMONIA images"):
        training_pool(frame, 0.2, 100, 0)


def test_two_folders_with_one_name_or_one_film_twice_are_refused(tmp_path: Path) -> None:
    first = make_synthetic_dataset(tmp_path / "a" / "data", {"train": 2}, size=16)
    second = make_synthetic_dataset(tmp_path / "b" / "data", {"train": 2}, size=16)
    with pytest.raises(DataError, match=r"site name 'data' is taken by"):
        scan_sources([first, second])
    film = next((first / "train" / "NORMAL").iterdir())
    csv = write_csv(tmp_path / "list", f"path,label\n{film},NORMAL\n", films=())
    with pytest.raises(DataError, match=r"listed by two sources"):
        scan_sources([first, csv])


def test_a_split_folder_takes_its_parents_name(two_sites: tuple[Path, Path]) -> None:
    assert set(scan_sources([two_sites[0] / "train"])["site"]) == {"kermany"}


# --- the per-site split ------------------------------------------------------------------------------


def test_validation_is_cut_per_site_by_patient_and_class(tmp_path: Path) -> None:
    """Two sites whose file (and so raw patient) names collide are split independently."""
    sites = [make_synthetic_dataset(tmp_path / name, {"train": 40}, size=16) for name in ("east", "west")]
    big = make_synthetic_csv_site(tmp_path / "north", per_class=60, size=16)
    frame = scan_sources([*sites, big])
    pool = training_pool(frame, val_fraction=0.25, min_val_images=100, seed=3)

    assert sorted(pool["path"]) == sorted(frame["path"])
    assert (pool.groupby("patient_id")["split"].nunique() == 1).all()  # no patient in both splits
    assert (pool.groupby("patient_id")["site"].nunique() == 1).all()  # no patient in two sites
    for site, part in pool.groupby("site"):
        for label in (0, 1):
            share = ((part["split"] == "val") & (part["label"] == label)).sum() / (
                part["label"] == label
            ).sum()
            assert 0.2 <= share <= 0.35, (site, label, share)


def test_one_site_splits_as_before(two_sites: tuple[Path, Path]) -> None:
    """A one-site manifest is split exactly as the folder alone (the patient prefix changes nothing)."""
    from pneumoscan.data.manifest import scan_dataset

    folder = two_sites[0]
    alone = training_pool(scan_dataset(folder), 0.2, 100, 7)
    sited = training_pool(scan_sources([folder]), 0.2, 100, 7)
    assert alone[["path", "split"]].values.tolist() == sited[["path", "split"]].values.tolist()


def test_a_site_with_only_test_films_is_refused(tmp_path: Path, two_sites: tuple[Path, Path]) -> None:
    held_out = make_synthetic_dataset(tmp_path / "held_out", {"test": 4}, size=16)
    with pytest.raises(DataError, match=r"site 'held_out' .*only test splits \(test\)"):
        training_pool(scan_sources([two_sites[0], held_out]), 0.2, 100, 0)


# --- site-balanced sampling --------------------------------------------------------------------------


def site_shares(weights: np.ndarray, sites: np.ndarray, draws: int = 40_000) -> np.ndarray:
    drawn = np.array(list(WeightedRandomSampler(weights.tolist(), draws, replacement=True)))
    return np.bincount(sites[drawn], minlength=2) / draws


def test_site_balanced_sampling_proportions() -> None:
    rng = np.random.default_rng(0)
    sites = np.repeat([0, 1], [5000, 700])
    labels = np.concatenate([rng.random(5000) < 0.75, rng.random(700) < 0.3]).astype(np.float32)

    assert sampling_weights(labels, sites, False, 0.0) is None  # pooled, shuffled: as before
    equal = sampling_weights(labels, sites, False, 1.0)
    assert equal is not None
    assert site_shares(equal, sites) == pytest.approx([0.5, 0.5], abs=0.015)
    half = sampling_weights(labels, sites, False, 0.5)
    assert half is not None
    expected = np.sqrt([5000, 700]) / np.sqrt([5000, 700]).sum()  # n_site ** (1 - 0.5)
    assert site_shares(half, sites) == pytest.approx(expected, abs=0.015)

    classes = sampling_weights(labels, sites, True, 0.0)  # classes balanced within each site
    assert classes is not None
    assert site_shares(classes, sites) == pytest.approx([5000 / 5700, 700 / 5700], abs=0.015)
    both = sampling_weights(labels, sites, True, 1.0)
    assert both is not None
    assert site_shares(both, sites) == pytest.approx([0.5, 0.5], abs=0.015)
    for site in (0, 1):  # both classes equally likely at every site
        in_site = sites == site
        share = both[in_site & (labels == 1)].sum() / both[in_site].sum()
        assert share == pytest.approx(0.5)


def test_config_fields() -> None:
    config = Config().with_overrides(
        ['data.sources=["a/", "b.csv"]', "data.site_balance=1", "train.monitor=val_auc_worst"]
    )
    assert config.data.sources == ["a/", "b.csv"] and config.train.monitor == "val_auc_worst"
    with pytest.raises(PneumoscanError, match=r"data\.site_balance"):
        Config().with_overrides(["data.site_balance=1.5"])
    with pytest.raises(PneumoscanError, match=r"train\.monitor"):
        Config().with_overrides(["train.monitor=val_acc"])


def test_view_balanced_sampling_makes_classes_equally_likely_in_every_view() -> None:
    # One site whose views differ by class (as in RSNA: most normals PA, most opacities AP).
    views = np.repeat([0, 1], [600, 400])  # 0 = PA, 1 = AP
    labels = np.concatenate([np.repeat([0, 1], [500, 100]), np.repeat([0, 1], [100, 300])]).astype(np.float32)
    sites = np.zeros(1000, dtype=int)

    by_site = sampling_weights(labels, sites, True, 1.0)
    by_view = sampling_weights(labels, sites, True, 1.0, groups=views)
    assert by_site is not None and by_view is not None
    for view in (0, 1):
        in_view = views == view
        share = by_view[in_view & (labels == 1)].sum() / by_view[in_view].sum()
        assert share == pytest.approx(0.5)  # within each view, both classes equally likely
    pa_share = by_site[(views == 0) & (labels == 1)].sum() / by_site[views == 0].sum()
    assert pa_share < 0.4  # balancing per site alone leaves the view standing in for the class
    assert by_view.sum() == pytest.approx(by_site.sum())  # the site keeps its weight
