"""``pneumoscan demo``: the whole pipeline on built-in synthetic data, offline, in about a minute."""

from __future__ import annotations

from pathlib import Path

from pneumoscan.atomic import output_folder
from pneumoscan.config import Config, recipe
from pneumoscan.evaluation.evaluate import evaluate
from pneumoscan.evaluation.metrics import format_report
from pneumoscan.evaluation.report import write_report
from pneumoscan.explain import explain_files
from pneumoscan.predict import Predictor
from pneumoscan.synthetic import make_synthetic_dataset
from pneumoscan.training.fit import train


def demo_config() -> Config:
    """The default recipe shrunk to the synthetic task: 64 px, a few epochs, no framing crops
    (the synthetic films' evidence reaches their edges, so crops would cut it off)."""
    return recipe("default").with_overrides(
        [
            "preprocess.image_size=64",
            "preprocess.crop_fraction=1.0",
            "augment.framing=0",
            "train.max_epochs=12",
            "train.batch_size=32",
        ]
    )


def run_demo(out: Path, progress: bool = True) -> None:
    """Make data, train, evaluate on the test split (``OUT/report.html``), and predict a few files
    with heat maps (``OUT/heatmaps/``)."""
    data = make_synthetic_dataset(output_folder(out) / "data", {"train": 120, "test": 30})
    print(f"synthetic data: {data}")
    result = train(
        data / "train", out / f"run-{len(list(out.glob('run-*'))) + 1}", demo_config(), progress=progress
    )
    predictor = Predictor.load(result.model_path)
    evaluation = evaluate(predictor, data, "test", progress=progress)
    print(format_report(evaluation.metrics))
    evaluation.write(result.run_dir / "evaluation")
    report = write_report(evaluation, predictor, out / "report.html")
    samples = sorted((data / "test").rglob("*.jpeg"))[::15]
    for prediction in explain_files(predictor, samples, out / "heatmaps"):
        print(f"{prediction.probability:.3f}  {prediction.label:<9}  {prediction.path}")
        print(f"    heat map: {prediction.heatmap_path}")
    print(f"run directory: {result.run_dir}")
    print(f"report: {report} (open it in a browser)")
    print(f"note: {predictor.meta.synthetic_warning()}")
    bundled = Predictor.load()
    print(
        f"bundled model for real films: {bundled.meta.model_id()} "
        "(pneumoscan predict FILM.jpeg; docs/model-card.md)"
    )
