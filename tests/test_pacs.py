"""`pneumoscan pacs` against a real Orthanc (DICOMweb plugin) on loopback, and `predict --dicom-out`.

The SR and SC objects are checked with dciodvfy (dicom3tools), the reference IOD validator.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicom_factory import (
    CT_IMAGE,
    TYPE2_PATIENT_STUDY,
    anonymised_header,
    study_header,
    write_compressed_dicom,
    write_dicom,
)
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, generate_uid

from pneumoscan.cli import main
from pneumoscan.synthetic import synthetic_film

pytest.importorskip("highdicom")
pytest.importorskip("dicomweb_client")

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "tester", "secret-word"
PROBABILITY, THRESHOLD = ("122157", "DCM"), ("122411", "DCM")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_orthanc(root: Path, **settings: object) -> Iterator[str]:
    """A fresh Orthanc with DICOMweb and a login on a free loopback port, storing under ``root``;
    ``settings`` add to or replace its configuration. Yields its REST root URL."""
    if shutil.which("Orthanc") is None or not DICOMWEB_PLUGIN.exists():
        pytest.skip(
            "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
        )
    port = _free_port()
    config = {
        "Name": "pneumoscan-test",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        **settings,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    process = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if requests.get(f"{url}/system", auth=(USER, PASSWORD), timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None:
                pytest.fail(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            pytest.fail("Orthanc did not start within 20 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Orthanc shared by this module's tests of one study; yields its REST root URL."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as url:
        yield url


def _upload(orthanc: str, *paths: Path) -> None:
    for path in paths:
        response = requests.post(f"{orthanc}/instances", data=path.read_bytes(), auth=(USER, PASSWORD))
        assert response.ok, response.text


def _film(path: Path, pneumonia: bool, header: dict[str, object]) -> Path:
    """A 12-bit DX chest film from the synthetic generator the test model was trained on."""
    pixels = synthetic_film(np.random.default_rng(7 + pneumonia), pneumonia).astype(np.uint16) * 16
    return write_dicom(path, pixels, bits_stored=12, header=header)


@pytest.fixture(scope="module")
def study(orthanc: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Path]]:
    """Upload a study of two DX films, a blank DX the model refuses, a CT slice and a DX with
    undecodable JPEG 2000 data.

    Returns the Study Instance UID and the local copies of the films by SOP Instance UID.
    """
    folder = tmp_path_factory.mktemp("study")
    uid = generate_uid()
    films = {
        "normal": _film(folder / "normal.dcm", False, study_header(uid, 1)),
        "pneumonia": _film(folder / "pneumonia.dcm", True, study_header(uid, 2)),
    }
    blank = write_dicom(folder / "blank.dcm", np.zeros((96, 96), np.uint16), header=study_header(uid, 5))
    ct_pixels = np.full((32, 32), 1000, np.uint16)
    ct = write_dicom(
        folder / "ct.dcm", ct_pixels, header=study_header(uid, 3, Modality="CT", SOPClassUID=CT_IMAGE)
    )
    broken = write_compressed_dicom(
        folder / "broken.dcm", JPEG2000Lossless, b"not a jpeg 2000 stream" * 4, header=study_header(uid, 4)
    )
    _upload(orthanc, *films.values(), blank, ct, broken)
    return uid, {str(pydicom.dcmread(p).SOPInstanceUID): p for p in films.values()}


def _pacs(orthanc: str, *args: str) -> list[str]:
    return ["pacs", "--url", f"{orthanc}/dicom-web", "--user", USER, "--password", PASSWORD, *args]


def _instances(orthanc: str, study_uid: str) -> list[dict]:
    response = requests.get(f"{orthanc}/studies", auth=(USER, PASSWORD))
    for orthanc_id in response.json():
        tags = requests.get(f"{orthanc}/studies/{orthanc_id}", auth=(USER, PASSWORD)).json()
        if tags["MainDicomTags"]["StudyInstanceUID"] == study_uid:
            return requests.get(f"{orthanc}/studies/{orthanc_id}/instances", auth=(USER, PASSWORD)).json()
    return []


def _download(orthanc: str, instance: dict) -> Dataset:
    response = requests.get(f"{orthanc}/instances/{instance['ID']}/file", auth=(USER, PASSWORD))
    import io

    return pydicom.dcmread(io.BytesIO(response.content))


def _numbers(sr: Dataset) -> dict[tuple[str, str], float]:
    """The NUM content items of an SR by concept code, found anywhere in the content tree."""
    found: dict[tuple[str, str], float] = {}

    def walk(items) -> None:
        for item in items:
            if item.ValueType == "NUM":
                code = item.ConceptNameCodeSequence[0]
                found[(code.CodeValue, code.CodingSchemeDesignator)] = float(
                    item.MeasuredValueSequence[0].NumericValue
                )
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def _dciodvfy_errors(dataset: Dataset, folder: Path) -> list[str]:
    """The error lines dciodvfy prints for ``dataset`` (warnings are allowed)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    path = folder / f"{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _predict_probabilities(model: Path, paths: list[Path], capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["predict", str(model), *map(str, paths), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {row["path"]: row["probability"] for row in rows}


def test_pacs_files_sr_and_heatmap_into_the_study_once(
    orthanc: str,
    study: tuple[str, dict[str, Path]],
    trained_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    study_uid, films = study
    before = len(_instances(orthanc, study_uid))
    capsys.readouterr()
    code = main(_pacs(orthanc, "--study", study_uid, "--model", str(trained_model), "--heatmaps"))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert code == 0, err
    assert len(lines) == 5, out  # one line per instance: two films, the blank one, the CT, the broken one
    assert sum("stored SR, SC" in line for line in lines) == 2
    refused_lines = [line for line in lines if "REFUSED" in line]
    assert len(refused_lines) == 1 and refused_lines[0].endswith("stored SR")  # an SR, no heat map
    assert any("skipped (CT)" in line for line in lines)
    assert "refused: DICOM Modality is CT" in err and "JPEG 2000" in err and "Traceback" not in err

    instances = _instances(orthanc, study_uid)
    assert len(instances) == before + 5  # an SR and an SC for each of the two films, an SR for the blank
    datasets = [_download(orthanc, item) for item in instances]
    reports = [d for d in datasets if d.Modality == "SR"]
    captures = [d for d in datasets if d.Modality == "OT"]
    assert len(reports) == 3 and len(captures) == 2
    expected = _predict_probabilities(trained_model, list(films.values()), capsys)
    refused = [r for r in reports if PROBABILITY not in _numbers(r)]
    assert len(refused) == 1 and _dciodvfy_errors(refused[0], tmp_path) == []
    for report in (r for r in reports if r not in refused):
        source = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        film = films[str(source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)]
        assert report.StudyInstanceUID == study_uid and report.PatientID == "PNEUMO-1"
        numbers = _numbers(report)
        # predict ran both films in one float32 batch, pacs one at a time: the last bits may differ
        assert numbers[PROBABILITY] == pytest.approx(expected[str(film)], abs=1e-6)
        assert 0 < numbers[THRESHOLD] < 1
        assert _dciodvfy_errors(report, tmp_path) == []
    for capture in captures:
        assert capture.StudyInstanceUID == study_uid and capture.pixel_array.ndim == 3
        assert _dciodvfy_errors(capture, tmp_path) == []

    # Again, finding the study by date: nothing is retrieved or stored twice.
    code = main(_pacs(orthanc, "--since", "2024-05-01T08:00", "--model", str(trained_model), "--heatmaps"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sum("already stored" in line for line in out.splitlines()) == 2, out
    assert sum("not judged, nothing stored" in line for line in out.splitlines()) == 1, out
    assert len(_instances(orthanc, study_uid)) == before + 5


def test_pacs_csv_lists_every_instance(
    orthanc: str, study: tuple[str, dict[str, Path]], trained_model: Path, tmp_path: Path
) -> None:
    study_uid, _ = study
    table = tmp_path / "results.csv"
    args = _pacs(orthanc, "--study", study_uid, "--model", str(trained_model), "--csv", str(table))
    assert main(args) == 0
    import pandas as pd

    rows = pd.read_csv(table, keep_default_na=False)
    assert len(rows) == 5 and set(rows["modality"]) == {"DX", "CT"}
    assert {"probability", "label", "threshold", "error", "status"} <= set(rows.columns)
    assert (rows["error"] != "").sum() == 2
    assert rows.set_index("modality").loc["CT", "refused"] == True  # noqa: E712 (as predict says)


def test_pacs_since_finds_no_later_study(
    orthanc: str, study: tuple[str, dict[str, Path]], trained_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_pacs(orthanc, "--since", "2030-01-01", "--model", str(trained_model))) == 0
    out, err = capsys.readouterr()
    assert out == "" and "0 studies since 2030-01-01" in err


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("wrong path", "HTTP 404"),
        ("refused", "connection refused"),
        ("no login", "HTTP 401"),
        ("wrong password", "HTTP 401"),
        ("not a URL", "not a DICOMweb URL"),
    ],
)
def test_pacs_archive_problems_give_one_line(
    orthanc: str, trained_model: Path, capsys: pytest.CaptureFixture[str], kind: str, expected: str
) -> None:
    url, login = f"{orthanc}/dicom-web", ["--user", USER, "--password", PASSWORD]
    if kind == "wrong path":
        url = f"{orthanc}/no-such-root"
    elif kind == "refused":
        url = f"http://127.0.0.1:{_free_port()}/dicom-web"
    elif kind == "no login":
        login = []
    elif kind == "wrong password":
        login = ["--user", USER, "--password", "wrong"]
    elif kind == "not a URL":
        url = "localhost:8042/dicom-web"
    code = main(["pacs", "--url", url, *login, "--study", generate_uid(), "--model", str(trained_model)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pneumoscan: error: ") and expected in err, err


def test_predict_dicom_out_writes_valid_sr_and_capture(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    film = _film(tmp_path / "film.dcm", True, study_header(generate_uid(), 1))
    jpeg = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(jpeg)
    out = tmp_path / "dicom-out"
    args = [
        "predict",
        str(trained_model),
        str(film),
        str(jpeg),
        "--json",
        "--dicom-out",
        str(out),
        "--heatmaps",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    probability = {
        json.loads(line)["path"]: json.loads(line)["probability"] for line in captured.out.splitlines()
    }
    assert f"{jpeg}: not a DICOM file" in captured.err and "DICOM results: 2 files" in captured.err
    written = [pydicom.dcmread(path) for path in sorted(out.iterdir())]
    report = next(d for d in written if d.Modality == "SR")
    assert _numbers(report)[PROBABILITY] == pytest.approx(probability[str(film)], abs=1e-9)
    for dataset in written:
        assert _dciodvfy_errors(dataset, tmp_path) == []
    # The same film and model give the same files: a second run replaces them.
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{d.SOPInstanceUID}.dcm" for d in written)


def test_sr_of_a_refused_film_says_not_judged(trained_model: Path, tmp_path: Path) -> None:
    from pneumoscan.pacs.results import result_sr
    from pneumoscan.predict import Prediction, Predictor

    meta = Predictor.load(trained_model).meta
    source = pydicom.dcmread(_film(tmp_path / "knee.dcm", False, study_header(generate_uid(), 1)))
    prediction = Prediction("knee.dcm", 0.4, None, meta.threshold, refused=True, refusal_reason="no chest")
    report = result_sr(source, prediction, meta)
    texts, codes = [], []

    def walk(items) -> None:
        for item in items:
            texts.append(str(item.get("TextValue", "")))
            codes.extend(str(c.CodeMeaning) for c in item.get("ConceptCodeSequence", []))
            walk(item.get("ContentSequence", []))

    walk(report.ContentSequence)
    assert "not judged: no chest" in texts and "Indeterminate" in codes
    assert PROBABILITY not in _numbers(report) and THRESHOLD in _numbers(report)
    assert _dciodvfy_errors(report, tmp_path) == []


def test_predict_dicom_out_of_anonymised_films(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Films without Type 2 patient/study attributes get results with them empty; a header value no
    result can carry (PatientSex X) skips that film with one line."""
    study_uid = generate_uid()
    anonymised = _film(tmp_path / "anonymised.dcm", True, anonymised_header(study_uid, 1))
    odd = _film(tmp_path / "odd.dcm", False, study_header(study_uid, 2, PatientSex="X"))
    out = tmp_path / "dicom-out"
    args = ["predict", str(trained_model), str(anonymised), str(odd), "--dicom-out", str(out), "--heatmaps"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{odd}: its DICOM header cannot be carried into a result" in err and "Traceback" not in err
    assert "DICOM results: 2 files" in err
    for path in out.iterdir():
        result = pydicom.dcmread(path)
        assert result.StudyInstanceUID == study_uid
        assert all(result[keyword].value in ("", None) for keyword in TYPE2_PATIENT_STUDY)
        assert _dciodvfy_errors(result, tmp_path) == []


def test_pacs_since_goes_past_films_that_cannot_be_answered(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dated = ("StudyDate", "StudyTime")
    studies = [generate_uid() for _ in range(3)]
    with running_orthanc(tmp_path) as url:
        _upload(
            url,
            _film(tmp_path / "a.dcm", True, anonymised_header(studies[0], 1, keep=dated)),
            _film(tmp_path / "b.dcm", False, study_header(studies[1], 1, PatientSex="X")),
            _film(tmp_path / "c.dcm", False, study_header(studies[2], 1)),
        )
        table = tmp_path / "results.csv"
        code = main(_pacs(url, "--since", "2024-05-01", "--model", str(trained_model), "--csv", str(table)))
        err = capsys.readouterr().err
        assert code == 0, err
        import pandas as pd

        rows = pd.read_csv(table, keep_default_na=False).set_index("study_uid")
        assert list(rows.loc[[studies[0], studies[2]], "status"]) == ["stored SR", "stored SR"]
        assert "its DICOM header cannot be carried into a result" in rows.loc[studies[1], "error"]
        assert "Traceback" not in err
        datasets = [_download(url, item) for item in _instances(url, studies[0])]
        reports = [d for d in datasets if d.Modality == "SR"]
        assert len(reports) == 1 and reports[0].PatientID == "" and reports[0].StudyDate == "20240501"


def _lateral_code() -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399073003", "SCT", "lateral"
    return code


def test_pacs_refuses_what_only_codes_say(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DX lateral marked only in ViewCodeSequence, a CT slice with an empty Modality: refused, no SR."""
    uid = generate_uid()
    lateral = study_header(uid, 1, ViewCodeSequence=[_lateral_code()])
    ct = study_header(uid, 2, Modality="", SOPClassUID=CT_IMAGE)
    with running_orthanc(tmp_path) as url:
        _upload(url, _film(tmp_path / "lateral.dcm", True, lateral), _film(tmp_path / "ct.dcm", False, ct))
        table = tmp_path / "results.csv"
        assert main(_pacs(url, "--study", uid, "--model", str(trained_model), "--csv", str(table))) == 2
        import pandas as pd

        rows = pd.read_csv(table, keep_default_na=False)
        assert rows["refused"].tolist() == [True, True]
        reasons = " ".join(rows["refusal_reason"])
        assert "ViewCodeSequence is lateral" in reasons and "says the modality is CT" in reasons
        assert len(_instances(url, uid)) == 2  # no SR stored for either


def test_pacs_goes_on_after_a_study_fails(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = generate_uid()
    with running_orthanc(tmp_path) as url:
        _upload(url, _film(tmp_path / "film.dcm", True, study_header(uid, 1)))
        table = tmp_path / "results.csv"
        args = ["--study", "1.2.3.4", "--study", uid, "--model", str(trained_model), "--csv", str(table)]
        code = main(_pacs(url, *args))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert "study 1.2.3.4 failed" in err and "not found" in err and "1 of 2 studies failed" in err
        import pandas as pd

        rows = pd.read_csv(table, keep_default_na=False).set_index("study_uid")
        assert rows.loc["1.2.3.4", "status"] == "study failed" and "not found" in rows.loc["1.2.3.4", "error"]
        assert rows.loc[uid, "status"] == "stored SR"


def _dated_studies(folder: Path, times: list[tuple[str, str | None]]) -> tuple[list[str], list[Path]]:
    """One single-film study per (StudyDate, StudyTime) pair (None: no StudyTime): UIDs and files."""
    uids = [generate_uid() for _ in times]
    files = [
        _film(folder / f"{index}.dcm", False, study_header(uid, 1, StudyDate=day, StudyTime=clock))
        for index, (uid, (day, clock)) in enumerate(zip(uids, times, strict=True))
    ]
    return uids, files


def test_pacs_since_pages_past_an_archive_cap(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive answering at most 4 studies per search: all 9 studies since 08:00 on May 1 are done,
    the one on that day without StudyTime among them; the one at 07:00 that day is not."""
    times = [("20240501", "070000"), ("20240501", None), ("20240501", "093000")]
    times += [("20240502", "101500")] * 3 + [("20240503", "111500")] * 2 + [("20240504", "121500")] * 2
    uids, files = _dated_studies(tmp_path, times)
    with running_orthanc(tmp_path, LimitFindResults=3) as url:
        _upload(url, *files)
        table = tmp_path / "results.csv"
        code = main(
            _pacs(url, "--since", "2024-05-01T08:00", "--model", str(trained_model), "--csv", str(table))
        )
        err = capsys.readouterr().err
        assert code == 0, err
        assert "9 studies since" in err and "capped" not in err
        import pandas as pd

        rows = pd.read_csv(table, keep_default_na=False)
        assert sorted(rows["study_uid"]) == sorted(uids[1:])
        assert set(rows["status"]) == {"stored SR"}


def test_pacs_since_reports_a_day_the_archive_caps(
    trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five studies on one day where the archive answers at most 4: the day is named, what was found is
    done, and the exit status says something was left out."""
    uids, files = _dated_studies(tmp_path, [("20240501", "090000")] + [("20240503", "101500")] * 5)
    with running_orthanc(tmp_path, LimitFindResults=3) as url:
        _upload(url, *files)
        table = tmp_path / "results.csv"
        code = main(_pacs(url, "--since", "2024-05-01", "--model", str(trained_model), "--csv", str(table)))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert "the archive capped results for 2024-05-03;" in err and "--study" in err
        import pandas as pd

        rows = pd.read_csv(table, keep_default_na=False)
        assert uids[0] in set(rows["study_uid"]) and len(rows) == 5
        assert set(rows["status"]) == {"stored SR"}
