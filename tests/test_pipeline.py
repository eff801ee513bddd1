"""End to end through the CLI and the Python API: inspect, train, evaluate, predict, and bad inputs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from PIL import Image
from safetensors.numpy import save_file

from pneumoscan import Predictor, evaluate
from pneumoscan.classes import OUTPUT_CLASSES as CLASS_NAMES
from pneumoscan.cli import PREDICT_HEADER, main
from pneumoscan.config import Config
from pneumoscan.data.inspect import InspectReport
from pneumoscan.evaluation.evaluate import Evaluation
from pneumoscan.model_file import read_meta, read_model, save_model
from pneumoscan.synthetic import make_synthetic_dataset, synthetic_film


def run_cli(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``pneumoscan ARGS`` (file-descriptor level, so nothing escapes)."""
    code = main(args)
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def synthetic_warning(model: Path) -> str:
    """The stderr line of every use of a model trained on synthetic data (as the test models are)."""
    return f"pneumoscan: warning: {read_meta(model).synthetic_warning()}\n"


def assert_one_error_line(err: str, *names: str) -> None:
    """stderr is one ``pneumoscan: error:`` line that names every one of ``names``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pneumoscan: error: "), err
    for name in names:
        assert name in lines[0], (name, err)


def alignment_mismatches(predictions: pd.DataFrame, alone: dict[str, float | None]) -> list[str]:
    """Rows of an evaluation table whose probability differs (by over 1e-5) from ``alone[path]``, the
    probability of predicting that file on its own, or whose label is not the class folder of the file."""
    problems = []
    for row in predictions.itertuples():
        probability = alone[row.path]
        if probability is None or abs(probability - row.probability) > 1e-5:
            problems.append(f"{row.path}: probability {row.probability} in the table, {probability} alone")
        folder = Path(row.path).parent.name.upper()
        if CLASS_NAMES[int(row.label)] != folder:
            problems.append(f"{row.path}: label {row.label} but the file is in {folder}/")
    return problems


# --- inspect ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def messy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Kaggle-layout set with extra PNEUMONIA films, a corrupt file and a train/test duplicate."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("messy"), {"train": 8, "test": 4}, size=48)
    rng = np.random.default_rng(5)
    for i in range(4):
        film = synthetic_film(rng, pneumonia=True, size=48)
        Image.fromarray(film).save(root / "train" / "PNEUMONIA" / f"person900_virus_{i}.jpeg")
    (root / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    leaked = sorted((root / "train" / "NORMAL").glob("IM-*.jpeg"))[0]
    shutil.copy(leaked, root / "test" / "NORMAL" / "IM-0998-0001.jpeg")
    return root


def test_inspect_cli(messy_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    manifest_csv = tmp_path / "manifest.csv"
    code, out, err = run_cli(
        [
            "inspect",
            str(messy_data),
            "--quiet",
            "--manifest",
            str(manifest_csv),
            "--plots",
            str(tmp_path / "plots"),
        ],
        capfd,
    )
    assert code == 0, err
    manifest = pd.read_csv(manifest_csv)
    assert len(manifest) == 8 + 12 + 1 + 5 + 4  # train NORMAL (+ corrupt), train PNEUMONIA, test
    assert set(manifest["split"]) == {"train", "val", "test"}  # val cut from train (no val/ folder)
    counts = manifest.groupby("class_name").size()
    ratio = counts["PNEUMONIA"] / counts["NORMAL"]
    assert f"class imbalance: {ratio:.2f} PNEUMONIA per film without it" in out
    assert "unreadable files: 1" in out and "IM-0999-0001.jpeg" in out
    assert "identical images in two splits: 1" in out
    assert "test:" in out and "IM-0998-0001.jpeg" in out
    assert "patients:" in out and "in both train and val: 0" in out
    table = out.split("\n\n")[0]
    assert "pneumonia %" in table and "test" in table and "val" in table
    assert (tmp_path / "plots" / "class_distribution.png").stat().st_size > 0
    assert (tmp_path / "plots" / "samples.png").stat().st_size > 0


def test_inspect_names_patient_ids_in_two_splits_and_says_what_to_do() -> None:
    rows = [(f"train/person{i}_virus_1.jpeg", "train", f"person{i}") for i in range(9)]
    rows += [(f"test/person{i}_virus_2.jpeg", "test", f"person{i}") for i in range(7)]
    manifest = pd.DataFrame(rows, columns=["path", "split", "patient_id"]).assign(
        label=1, class_name="PNEUMONIA", site="chest_xray"
    )
    text = InspectReport(manifest, {}, pd.DataFrame(), resplit=False).text()
    (line,) = [line for line in text.splitlines() if line.startswith("patient ids in more than one split")]
    assert line.startswith(
        "patient ids in more than one split: 7: person0 (test+train), person1 (test+train)"
    )
    assert "person4 (test+train), and 2 more" in line and "person5" not in line
    assert "move each patient's films into one split" in text
    alone = InspectReport(manifest[manifest["split"] == "train"], {}, pd.DataFrame(), resplit=False).text()
    assert "patient ids in more than one split: 0" in alone


# --- train, evaluate, predict ------------------------------------------------------------------------


CLI_OVERRIDES = ["train.max_epochs=4", "train.batch_size=8", "augment.enabled=false"]
NARROW = 'model.options={"widths": [16, 32, 64]}'


@pytest.fixture(scope="module")
def cli_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    """A run trained through ``pneumoscan train`` (narrow network, 4 epochs) and the config it should have."""
    base = tmp_path_factory.mktemp("cli-run")
    config_file = base / "tiny.json"
    config_file.write_text(tiny_config().to_json())
    run_dir = base / "run"
    args = ["train", "--data", str(synthetic_data / "train"), "--out", str(run_dir), "--config"]
    args += [
        str(config_file),
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--no-augment",
        "--set",
        NARROW,
        "--quiet",
    ]
    assert main(args) == 0
    sources = f"data.sources={json.dumps([str(synthetic_data / 'train')])}"  # --data is recorded
    return run_dir, tiny_config().with_overrides([*CLI_OVERRIDES, NARROW, sources])


@pytest.fixture(scope="module")
def model(cli_run: tuple[Path, Config]) -> Path:
    """The model file of :func:`cli_run`."""
    return cli_run[0] / "model.safetensors"


def test_cli_train_writes_a_complete_run_dir(cli_run: tuple[Path, Config]) -> None:
    run_dir, expected = cli_run
    assert Config.load(run_dir / "config.json") == expected
    meta, tensors = read_model(run_dir / "model.safetensors")
    assert meta.config == expected and meta.model.options == {"widths": [16, 32, 64]}
    assert tensors["stem.0.0.weight"].shape[0] == 16
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history[["train_loss", "val_loss", "val_auc", "lr-AdamW"]].notna().all().all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["epochs"] == 4
        and summary["world_size"] == 1
        and summary["train_images"] + summary["val_images"] == 160
    )
    assert summary["validation"]["images"] == summary["val_images"]
    for name in ("learning_curves.png", "class_distribution.png", "samples.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


@pytest.fixture(scope="module")
def evaluation(model: Path, synthetic_data: Path) -> Evaluation:
    """The model of :func:`cli_run` evaluated on the test split through the Python API."""
    return evaluate(Predictor.load(model), synthetic_data, "test", progress=False)


@pytest.fixture(scope="module")
def alone(model: Path, synthetic_data: Path) -> dict[str, float | None]:
    """``Predictor.predict_files([path])`` for every test image, one file at a time."""
    predictor = Predictor.load(model)
    paths = sorted(str(p) for p in (synthetic_data / "test").rglob("*.jpeg"))
    return {path: predictor.predict_files([path])[0].probability for path in paths}


def test_api_evaluation_is_good_and_aligned(
    evaluation: Evaluation, alone: dict[str, float | None], tmp_path: Path
) -> None:
    table = evaluation.predictions
    assert len(table) == 40 and evaluation.skipped == {}
    assert sorted(table["path"]) == sorted(alone)
    judged = table[~table["refused"]]  # the gate may refuse a synthetic film; those are counted, not measured
    assert evaluation.metrics["refused"] == len(table) - len(judged) <= 2
    assert evaluation.metrics["images"] == len(judged)
    assert evaluation.metrics["accuracy"] > 0.8
    assert evaluation.metrics["roc_auc"] > 0.9
    assert evaluation.metrics["accuracy"] == pytest.approx((judged["predicted"] == judged["label"]).mean())
    assert alignment_mismatches(table, alone) == []

    written = evaluation.write(tmp_path / "eval")
    expected = {"metrics.json", "predictions.csv", "confusion_matrix.png", "roc_curve.png", "reliability.png"}
    assert {p.name for p in written} >= expected
    assert alignment_mismatches(pd.read_csv(tmp_path / "eval" / "predictions.csv"), alone) == []


def test_alignment_check_catches_shuffled_probabilities_and_labels(
    evaluation: Evaluation, alone: dict[str, float | None]
) -> None:
    table = evaluation.predictions
    shuffled = table.assign(probability=table["probability"].to_numpy()[::-1])
    assert len(alignment_mismatches(shuffled, alone)) >= len(table) // 2
    swapped = table.assign(label=1 - table["label"])
    assert len(alignment_mismatches(swapped, alone)) == len(table)
    one_off = table.copy()
    one_off.loc[3, "probability"] += 1e-3
    problems = alignment_mismatches(one_off, alone)
    assert len(problems) == 1 and problems[0].startswith(f"{table.loc[3, 'path']}: probability")


def test_cli_evaluate_matches_the_api(
    model: Path,
    synthetic_data: Path,
    evaluation: Evaluation,
    alone: dict[str, float | None],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    out_dir = tmp_path / "eval"
    args = ["evaluate", str(model), str(synthetic_data), "--out", str(out_dir), "--quiet"]
    code, out, err = run_cli(args, capfd)
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    api = evaluation.metrics
    assert metrics["accuracy"] == pytest.approx(api["accuracy"])
    assert metrics["roc_auc"] == pytest.approx(api["roc_auc"])
    assert metrics["split"] == "test" and metrics["images"] + metrics["refused"] == 40
    assert (metrics["images"], metrics["refused"]) == (api["images"], api["refused"])
    assert f"accuracy {api['accuracy']:.4f}" in out and "confusion matrix" in out
    assert alignment_mismatches(pd.read_csv(out_dir / "predictions.csv"), alone) == []


def test_cli_predict_outputs(
    model: Path, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    files = sorted(str(p) for p in (synthetic_data / "test").rglob("*.jpeg"))[::9]
    expected = {p.path: p for p in Predictor.load(model).predict_files(files)}

    code, out, err = run_cli(["predict", str(model), *files], capfd)
    assert code == 0 and err == synthetic_warning(model)
    header, *lines = out.strip().splitlines()
    assert header == PREDICT_HEADER and header.split() == ["probability", "label", "file"]
    assert len(lines) == len(files)
    for line, path in zip(lines, files, strict=True):
        probability, label, shown = line.split(maxsplit=2)
        assert shown == path
        assert float(probability) == pytest.approx(expected[path].probability, abs=1e-4)
        assert label == expected[path].label

    code, out, _ = run_cli(["predict", "--model", str(model), "--json", *files], capfd)
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["path"] for r in rows] == files
    assert [r["probability"] for r in rows] == pytest.approx(
        [expected[f].probability for f in files], abs=1e-6
    )

    csv_path = tmp_path / "out.csv"
    code, out, _ = run_cli(["predict", str(model), *files, "--csv", str(csv_path)], capfd)
    table = pd.read_csv(csv_path)
    assert code == 0 and f"wrote {len(files)} rows" in out
    assert table["path"].tolist() == files and table["label"].tolist() == [expected[f].label for f in files]

    code, out, _ = run_cli(["predict", str(model), str(synthetic_data / "test"), "--csv", "-"], capfd)
    from_folder = pd.read_csv(io.StringIO(out))
    assert code == 0 and len(from_folder) == 40
    assert (from_folder["label"].isna() == from_folder["refused"]).all()  # a refused film has no label
    assert set(from_folder.loc[~from_folder["refused"], "label"]) == set(CLASS_NAMES)


# --- bad inputs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-images")
    corrupt = folder / "corrupt.jpeg"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    truncated = folder / "truncated.jpeg"
    Image.fromarray(synthetic_film(np.random.default_rng(2), True, 96)).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:400])
    text = folder / "notes.png"
    text.write_text("patient notes, not an image\n")
    return {"corrupt": corrupt, "truncated": truncated, "text": text, "missing": folder / "missing.jpeg"}


def test_predict_skips_bad_images_among_good_ones(
    model: Path, synthetic_data: Path, bad_images: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    good = sorted(str(p) for p in (synthetic_data / "test" / "NORMAL").glob("*.jpeg"))[:2]
    bad = [str(p) for p in bad_images.values()]
    code, out, err = run_cli(["predict", str(model), good[0], *bad, good[1]], capfd)

    assert code == 0
    assert [line.split()[-1] for line in out.strip().splitlines()[1:]] == good
    assert err.startswith(synthetic_warning(model))
    lines = err[len(synthetic_warning(model)) :].strip().splitlines()
    for path in bad:
        naming = [line for line in lines if path in line]
        assert len(naming) == 1 and naming[0].startswith("pneumoscan: skipped "), (path, err)
    assert lines[-1] == f"pneumoscan: {len(bad)} of {len(bad) + 2} files skipped"
    assert len(lines) == len(bad) + 1
    assert not any(path in err for path in good)


def test_predict_with_only_bad_images_fails(
    model: Path, bad_images: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["predict", str(model), str(bad_images["corrupt"])], capfd)
    assert code == 2 and out.strip() == ""
    assert str(bad_images["corrupt"]) in err.splitlines()[0]


def test_predict_names_every_kind_of_model(
    cli_run: tuple[Path, Config], synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """One model resolver for every command: a checkpoint is refused, ``bundled`` is a model, not an image."""
    image = str(next((synthetic_data / "test" / "NORMAL").glob("*.jpeg")))
    checkpoint = str(cli_run[0] / "checkpoints" / "best.ckpt")
    for args in (
        ["predict", checkpoint, image],
        ["predict", "--model", checkpoint, image],
        ["evaluate", checkpoint, str(synthetic_data), "--quiet"],
        ["export", checkpoint, str(tmp_path / "m.onnx")],
        ["info", checkpoint],
        ["serve", "--model", checkpoint, "--port", "1"],
    ):
        code, out, err = run_cli(args, capfd)
        assert code == 2 and out == "", (args, err)
        assert_one_error_line(err, checkpoint, "a training checkpoint, not a model file")

    code, out, err = run_cli(["predict", "bundled", image, "--json"], capfd)
    [row] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "error" not in err and row["path"] == image
    assert row["probability"] == pytest.approx(Predictor.load().predict_files([image])[0].probability)

    code, _, err = run_cli(["predict", str(cli_run[0] / "notes.txt"), image], capfd)
    assert code == 0 and "notes.txt" in err  # not a model name: an image to skip, with the others predicted


def test_predict_keeps_files_whose_names_are_not_utf8(
    model: Path, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "films"
    folder.mkdir()
    films = sorted((synthetic_data / "test" / "NORMAL").glob("*.jpeg"))[:3]
    raw_names = [b"a-film.jpeg", b"b-\xff\xfe-latin1.jpeg", b"c-film.jpeg"]  # the middle one is not UTF-8
    for film, raw in zip(films, raw_names, strict=True):
        shutil.copy(film, os.path.join(os.fsencode(folder), raw))

    csv_path = tmp_path / "out.csv"
    code, out, _ = run_cli(["predict", str(model), str(folder), "--csv", str(csv_path)], capfd)
    assert code == 0 and "wrote 3 rows" in out
    table = pd.read_csv(csv_path, encoding_errors="surrogateescape")
    assert [os.fsencode(Path(p).name) for p in table["path"]] == raw_names  # the names' own bytes
    assert table["probability"].notna().all()

    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "pneumoscan", "predict", str(model), str(folder)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.splitlines()[1:]  # under the header line
    assert [line.rsplit(b"/", 1)[-1] for line in lines] == raw_names


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory, model: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-models")
    random_bytes = folder / "random.safetensors"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = folder / "text.safetensors"
    text.write_text("this is a text file\n")
    plain = folder / "plain.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(plain), metadata={"format": "pt"})
    meta, tensors = read_model(model)
    misfit = folder / "misfit.safetensors"
    save_model(misfit, {**tensors, "stem.0.0.weight": np.zeros((3, 1, 3, 3), np.float32)}, meta)
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return {
        "random bytes": random_bytes,
        "text": text,
        "no pneumoscan metadata": plain,
        "wrong weights": misfit,
        "truncated": truncated,
        "missing": folder / "missing.safetensors",
        "folder": folder,
    }


def test_model_metadata_errors_name_the_field(
    model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    meta, tensors = read_model(model)
    fields = json.loads(meta.model_dump_json())
    fields["threshold"] = 1.5
    bad = tmp_path / "bad-threshold.safetensors"
    save_file(tensors, str(bad), metadata={"pneumoscan": json.dumps(fields)})
    code, _, err = run_cli(["info", str(bad)], capfd)
    assert code == 2
    assert_one_error_line(
        err, str(bad), "damaged pneumoscan metadata (threshold: Input should be less than 1"
    )


def test_huge_architecture_options_fail_before_anything_is_allocated(model: Path, tmp_path: Path) -> None:
    """A few-KB file whose options describe a 600 MB network is refused by its shapes, not by the RAM."""
    meta, tensors = read_model(model)
    fields = json.loads(meta.model_dump_json())
    fields["model"]["options"]["widths"] = [2048, 2048]  # about 155 M parameters
    huge = tmp_path / "huge.safetensors"
    save_file(tensors, str(huge), metadata={"pneumoscan": json.dumps(fields)})

    def predict_missing_film(model_file: Path) -> tuple[int, int, str]:
        """Exit status, peak memory (MiB) and stderr of ``predict --model MODEL_FILE missing.jpeg``."""
        probe = (
            "import resource; from pneumoscan.cli import main\n"
            f"code = main(['predict', '--model', {str(model_file)!r}, 'missing.jpeg'])\n"
            "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
        )
        code, peak = map(int, done.stdout.split())
        return code, peak, done.stderr

    code, peak_mib, err = predict_missing_film(huge)
    assert code == 2 and "parameters, over the limit of" in err, err  # refused by its size, before building
    _, usual_peak_mib, _ = predict_missing_film(model)
    assert peak_mib < usual_peak_mib + 100  # the 155 M parameters would take 600 MB more


@pytest.mark.parametrize(
    "kind",
    ["random bytes", "text", "no pneumoscan metadata", "wrong weights", "truncated", "missing", "folder"],
)
def test_wrong_model_file_is_one_line_exit_2(
    kind: str,
    bad_models: dict[str, Path],
    synthetic_data: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    model = str(bad_models[kind])
    image = str(next((synthetic_data / "test" / "NORMAL").glob("*.jpeg")))
    commands = [["predict", "--model", model, image], ["evaluate", model, str(synthetic_data), "--quiet"]]
    if kind != "wrong weights":  # info reads the metadata only
        commands.append(["info", model])
    for args in commands:
        code, out, err = run_cli(args, capfd)
        assert code == 2, (args, err)
        assert_one_error_line(err, model)
        assert out == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--recipe", "nope"], "unknown recipe 'nope'"),
        (["--set", "train.lr=-1"], "train.lr"),
        (["--set", "nonsense"], "nonsense"),
        (["--set", "nosuch.field=1"], "nosuch"),
        (["--set", "train.nosuch=1"], "train.nosuch"),
        (["--set", "preprocess.channels=2"], "preprocess.channels"),
        (["--config", "/no/such/config.json"], "/no/such/config.json"),
        (["--config", "/dev/zero"], "/dev/zero: not a readable JSON config (not a regular file"),
        (["--recipe", "seed", "--config", "/no/such/config.json"], "not both"),
    ],
)
def test_bad_train_settings_are_one_line_exit_2(
    args: list[str], needle: str, synthetic_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", str(synthetic_data), "--out", str(run_dir), *args], capfd)
    assert code == 2
    assert_one_error_line(err, needle)
    assert not run_dir.exists()


def test_bad_data_folders_are_one_line_exit_2(
    model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nowhere")
    for args in (
        ["evaluate", str(model), missing, "--quiet"],
        ["inspect", missing, "--quiet"],
        ["train", "--data", missing, "--out", str(tmp_path / "run"), "--quiet"],
    ):
        code, _, err = run_cli(args, capfd)
        assert code == 2, args
        assert_one_error_line(err, missing)
    code, _, err = run_cli(["evaluate", str(model), str(tmp_path), "--quiet"], capfd)
    assert code == 2
    assert_one_error_line(err, str(tmp_path), "NORMAL")


def test_model_metadata_round_trip(model: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["info", str(model)], capfd)
    assert code == 0
    assert json.loads(out) == json.loads(read_meta(model).model_dump_json())


def test_info_shows_the_bundled_model_with_or_without_its_name(capfd: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.model_source import bundled_model_path

    expected = json.loads(read_meta(bundled_model_path()).model_dump_json())
    for args in (["info"], ["info", "bundled"]):
        code, out, _ = run_cli(args, capfd)
        assert code == 0 and json.loads(out) == expected
