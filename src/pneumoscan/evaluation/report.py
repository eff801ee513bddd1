"""``pneumoscan evaluate --report FILE``: one self-contained HTML page about a model on a labelled split.

Everything is inline -- CSS, and every image as a ``data:image/png;base64`` URI -- and there is no
JavaScript, so the page opens offline and travels as one file.  Metrics carry 95 % bootstrap
confidence intervals (percentile method over resamples of the images, seeded, so a report is
reproducible).  The worst errors come with their Grad-CAM heat maps when the engine is torch.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan import __version__
from pneumoscan.atomic import atomic_write_text
from pneumoscan.errors import ImageReadError, PneumoscanError
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.evaluate import Evaluation
from pneumoscan.predict import Predictor

METRICS: dict[str, str] = {
    "accuracy": "Accuracy",
    "roc_auc": "ROC-AUC",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1",
}
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RESAMPLES = 1000
GALLERY_SIZE = 6
THUMBNAIL_SIDE = 320
_CHUNK_CELLS = 4_000_000  # bootstrap weights held in memory at once


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (``None`` where undefined, e.g. no positives)."""

    estimate: float | None
    low: float | None
    high: float | None


def bootstrap_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Each metric of :data:`METRICS` at ``threshold`` with a percentile bootstrap interval.

    Resamples are drawn as multinomial image counts, and all of them are evaluated at once with
    array arithmetic (ROC-AUC as the Mann-Whitney statistic, ties counting one half).
    """
    labels, probabilities = sort_by_probability(labels, probabilities)
    n = len(labels)
    point = metric_values(labels, probabilities, threshold, np.ones((1, n)))[0]
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    draws = np.concatenate(
        [
            metric_values(labels, probabilities, threshold, rng.multinomial(n, np.full(n, 1 / n), size=k))
            for k in [min(rows, resamples - start) for start in range(0, resamples, rows)]
        ]
    )
    return {name: _interval(point[i], draws[:, i], level) for i, name in enumerate(METRICS)}


def sort_by_probability(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean labels and float64 probabilities, in ascending order of probability."""
    order = np.argsort(probabilities, kind="stable")
    return np.asarray(labels)[order].astype(bool), np.asarray(probabilities, dtype=np.float64)[order]


def metric_values(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, weights: np.ndarray
) -> np.ndarray:
    """:data:`METRICS` (columns, NaN where undefined) for each row of image ``weights`` ``(B, N)``.

    ``probabilities`` must be sorted ascending and ``labels`` boolean in the same order.
    """
    weights = np.asarray(weights, dtype=np.float64)
    predicted = probabilities >= threshold
    tp, fp = weights @ (labels & predicted), weights @ (~labels & predicted)
    fn, tn = weights @ (labels & ~predicted), weights @ (~labels & ~predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
            "roc_auc": _weighted_auc(labels, probabilities, weights),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "precision": tp / (tp + fp),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }
    return np.stack([columns[name] for name in METRICS], axis=1)


def write_report(evaluation: Evaluation, predictor: Predictor, path: str | Path) -> Path:
    """Write the HTML report of ``evaluation`` (made with ``predictor``) to ``path`` atomically."""
    target = Path(path)
    if target.is_dir():
        raise PneumoscanError(f"{target}: is a folder; give --report a file name such as report.html")
    page = _page(evaluation, predictor)
    try:
        atomic_write_text(target, page)
    except OSError as exc:
        raise PneumoscanError(
            f"{target}: cannot write the report ({exc.strerror or exc}); choose another --report file"
        ) from exc
    return target


def _weighted_auc(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC-AUC for each row of ``weights``; ``probabilities`` sorted ascending."""
    starts = np.flatnonzero(np.r_[True, np.diff(probabilities) > 0])  # first image of each distinct score
    positives = np.add.reduceat(weights * labels, starts, axis=1)
    negatives = np.add.reduceat(weights * ~labels, starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    with np.errstate(divide="ignore", invalid="ignore"):
        return (positives * (below + 0.5 * negatives)).sum(axis=1) / (
            positives.sum(axis=1) * negatives.sum(axis=1)
        )


def _interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    if not np.isfinite(estimate):
        return Interval(None, None, None)
    finite = draws[np.isfinite(draws)]
    if not finite.size:
        return Interval(float(estimate), None, None)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))


# ---------------------------------------------------------------- the page


def _page(evaluation: Evaluation, predictor: Predictor) -> str:
    table = evaluation.predictions
    labels = table["label"].to_numpy().astype(int)
    probabilities = table["probability"].to_numpy(dtype=np.float64)
    threshold = float(evaluation.metrics["threshold"])
    title = f"pneumoscan report: {evaluation.metrics['model']}"
    sections = [
        _summary(evaluation, predictor),
        _metrics_section(labels, probabilities, threshold),
        _plots_section(evaluation, labels, probabilities, threshold),
        _thresholds_section(labels, probabilities, threshold),
        _gallery_section(table, predictor),
    ]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{''.join(sections)}"
        f"<footer>pneumoscan {_esc(__version__)}, {generated}. Research software: not a medical device."
        "</footer></body></html>\n"
    )


def _summary(evaluation: Evaluation, predictor: Predictor) -> str:
    meta, metrics, table = predictor.meta, evaluation.metrics, evaluation.predictions
    counts = table["class_name"].value_counts()
    pre = meta.preprocess
    facts = [
        ("Model", metrics["model"]),
        (
            "Architecture",
            f"{meta.model.architecture} on {pre.image_size} px, {pre.channels} channel(s), "
            f"centre crop {pre.crop_fraction:g}",
        ),
        ("Threshold", f"{meta.threshold:.3f} ({meta.threshold_rule})"),
        ("Temperature", f"{meta.temperature:.3f}"),
        ("Engine", predictor.engine.name),
        ("Data", f"{metrics['data']} (split {metrics['split']})"),
        ("Images", f"{len(table)}: " + ", ".join(f"{counts.get(n, 0)} {n}" for n in meta.class_names)),
        ("Unreadable files skipped", str(len(evaluation.skipped))),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    skipped = "".join(f"<li>{_esc(message)}</li>" for message in evaluation.skipped.values())
    details = f"<details><summary>Skipped files</summary><ul>{skipped}</ul></details>" if skipped else ""
    return f"<section><h2>Model and data</h2><table class='facts'>{rows}</table>{details}</section>"


def _metrics_section(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> str:
    intervals = bootstrap_metrics(labels, probabilities, threshold)
    rows = "".join(
        f"<tr data-metric='{name}'><th>{_esc(METRICS[name])}</th><td>{_num(value.estimate)}</td>"
        f"<td>{_num(value.low)} &ndash; {_num(value.high)}</td></tr>"
        for name, value in intervals.items()
    )
    return (
        f"<section><h2>Metrics at threshold {threshold:.3f}</h2><table id='metrics'>"
        f"<tr><th>Metric</th><th>Value</th><th>95% CI</th></tr>{rows}</table>"
        f"<p class='note'>95% confidence intervals: percentile bootstrap, {RESAMPLES} resamples of the "
        "images (seed 0). Images of one patient are resampled independently, so intervals may be "
        "somewhat narrow when patients contribute several images.</p></section>"
    )


def _plots_section(
    evaluation: Evaluation, labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> str:
    metrics = evaluation.metrics
    reliability = plots.reliability_figure(labels, probabilities)
    reliability.axes[0].set_title(f"ECE {metrics['ece']:.3f}")
    figures = [("Confusion matrix (rows: true class)", plots.confusion_figure(metrics["confusion_matrix"]))]
    if labels.min() != labels.max():
        figures += [
            (f"ROC curve, AUC {metrics['roc_auc']:.3f}", plots.roc_figure(labels, probabilities, threshold)),
            ("Precision-recall curve", plots.precision_recall_figure(labels, probabilities, threshold)),
        ]
    figures.append(
        (
            f"Reliability diagram, expected calibration error {metrics['ece']:.3f}, log loss "
            f"{metrics['loss']:.3f}",
            reliability,
        )
    )
    cells = "".join(
        f"<figure>{_img(plots.figure_png_bytes(fig), caption)}"
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
        for caption, fig in figures
    )
    note = (
        ""
        if labels.min() != labels.max()
        else "<p class='note'>ROC and precision-recall curves need both classes.</p>"
    )
    return f"<section><h2>Plots</h2><div class='row'>{cells}</div>{note}</section>"


def _thresholds_section(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> str:
    ordered_labels, ordered = sort_by_probability(labels, probabilities)
    ones = np.ones((1, len(ordered)))
    names = ("sensitivity", "specificity", "precision", "accuracy")
    index = [list(METRICS).index(name) for name in names]
    rows = []
    for value in sorted({*THRESHOLDS, threshold}):
        measured = metric_values(ordered_labels, ordered, value, ones)[0, index]
        own = value == threshold
        cells = "".join(f"<td>{_num(float(v))}</td>" for v in measured)
        flagged = int((probabilities >= value).sum())
        attributes, mark = (" class='model-threshold'", " (model)") if own else ("", "")
        rows.append(f"<tr{attributes}><th>{value:.3f}{mark}</th>{cells}<td>{flagged}</td></tr>")
    header = "".join(f"<th>{_esc(METRICS[name])}</th>" for name in names)
    return (
        "<section><h2>Operating points</h2><table id='thresholds'>"
        f"<tr><th>Threshold</th>{header}<th>Flagged PNEUMONIA</th></tr>{''.join(rows)}</table>"
        "<p class='note'>The model's own threshold is marked.</p></section>"
    )


def _gallery_section(table: pd.DataFrame, predictor: Predictor) -> str:
    wrong = table[table["label"] != table["predicted"]]
    groups = [
        (
            "False positives (NORMAL films called PNEUMONIA), most confident first",
            wrong[wrong["label"] == 0].nlargest(GALLERY_SIZE, "probability"),
        ),
        (
            "False negatives (PNEUMONIA films called NORMAL), most confident first",
            wrong[wrong["label"] == 1].nsmallest(GALLERY_SIZE, "probability"),
        ),
    ]
    torch_engine = predictor.engine.name == "torch"
    note = (
        "Heat maps: Grad-CAM of the PNEUMONIA logit (red: most evidence), inside the model's centre crop."
        if torch_engine
        else "Heat maps need the torch engine: evaluate the .safetensors model file to see them."
    )
    parts = [f"<section><h2>Worst errors</h2><p class='note'>{_esc(note)}</p>"]
    for heading, rows in groups:
        cards = "".join(
            _card(row.path, row.probability, predictor, torch_engine) for row in rows.itertuples()
        )
        parts.append(f"<h3>{_esc(heading)}</h3><div class='row'>{cards or '<p>None.</p>'}</div>")
    return "".join(parts) + "</section>"


def _card(path: str, probability: float, predictor: Predictor, torch_engine: bool) -> str:
    name = Path(path).name
    caption = f"<figcaption title='{_esc(path)}'>{_esc(name)}<br>P(pneumonia) {probability:.3f}</figcaption>"
    if not torch_engine:
        return f"<figure class='card'>{caption}</figure>"
    from pneumoscan.explain import explain_file, overlay_png

    try:
        explanation = explain_file(predictor, path)
    except ImageReadError as exc:
        return f"<figure class='card'><p>{_esc(str(exc))}</p>{caption}</figure>"
    return f"<figure class='card'>{_img(overlay_png(explanation, THUMBNAIL_SIDE), name)}{caption}</figure>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{_esc(alt)}'>"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right}
table.facts th,table.facts td{text-align:left}th{background:#f5f5f5}
tr.model-threshold th,tr.model-threshold td{background:#ffe9a8;font-weight:bold}
.row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figure img{max-width:100%;display:block}
figure.card{width:240px;font-size:.85em;word-break:break-all}figure.card img{width:100%}
figcaption{margin-top:.3em}.note{color:#555;font-size:.9em}footer{margin-top:3em;color:#777;font-size:.8em}
"""
