"""``pneumoscan evaluate --report FILE``: one self-contained HTML page about a model on a labelled split.

Everything is inline -- CSS, and every image as a ``data:image/png;base64`` URI -- and there is no
JavaScript, so the page opens offline and travels as one file.  Metrics carry 95 % bootstrap
confidence intervals (percentile method over resamples of the patients, seeded, so a report is
reproducible; :mod:`pneumoscan.evaluation.bootstrap`), overall and per site and subgroup
(:mod:`pneumoscan.evaluation.groups`).  The worst errors come with their heat maps when
the engine is torch.  The metrics, plots, operating points and errors are those of the NORMAL and
PNEUMONIA films; OTHER films (another finding) have their own section: the fraction called
PNEUMONIA, clear and ambiguous films apart (:mod:`pneumoscan.evaluation.other`).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscan import __version__
from pneumoscan.atomic import atomic_write_text
from pneumoscan.classes import OTHER, OUTPUT_CLASSES, ambiguous_of, film_classes_of, present_classes
from pneumoscan.errors import ImageReadError, PneumoscanError
from pneumoscan.evaluation import plots
from pneumoscan.evaluation.bootstrap import (
    METRICS,
    RESAMPLES,
    bootstrap_metrics,
    clusters_of,
    metric_values,
    sort_by_probability,
)
from pneumoscan.evaluation.evaluate import Evaluation
from pneumoscan.evaluation.groups import AGE_BANDS, HEADLINE, MIN_FILMS, with_interval
from pneumoscan.evaluation.intervals import Proportion
from pneumoscan.evaluation.other import KINDS, with_fraction
from pneumoscan.predict import Predictor

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GALLERY_SIZE = 6
THUMBNAIL_SIDE = 320
LOCALISATION_EXAMPLES = 4  # half hits, the rest misses where there are enough


def write_report(evaluation: Evaluation, predictor: Predictor, path: str | Path) -> Path:
    """Write the HTML report of ``evaluation`` (made with ``predictor``) to ``path`` atomically."""
    target = Path(path)
    if target.is_dir():
        raise PneumoscanError(f"{target}: is a folder; give --report a file name such as report.html")
    page = _page(evaluation, predictor)
    atomic_write_text(target, page)  # an OS error: one line naming the file (pneumoscan.atomic)
    return target


# ---------------------------------------------------------------- the page


def _page(evaluation: Evaluation, predictor: Predictor) -> str:
    table = evaluation.measured()
    labels = table["label"].to_numpy().astype(int)
    probabilities = table["probability"].to_numpy(dtype=np.float64)
    threshold = float(evaluation.metrics["threshold"])
    title = f"pneumoscan report: {evaluation.metrics['model']}"
    sections = [_summary(evaluation, predictor)]
    if len(table):
        groups = evaluation.metrics.get("groups", {})
        sections += [
            _metrics_section(table, threshold),
            _operating_point_section(evaluation, predictor),
            _groups_section(groups),
        ]
    sections.append(_other_section(evaluation.metrics.get("other"), predictor))
    if len(table):
        sections += [
            _plots_section(evaluation, labels, probabilities, threshold),
            _thresholds_section(labels, probabilities, threshold),
            _gallery_section(table, predictor),
        ]
    sections.append(_localisation_section(evaluation, predictor))
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
        ("Images", f"{len(table)}: " + ", ".join(f"{n} {name}" for name, n in _class_counts(table))),
        ("Trained on", ", ".join(meta.film_classes)),
        ("Unreadable files skipped", str(len(evaluation.skipped))),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    skipped = "".join(f"<li>{_esc(message)}</li>" for message in evaluation.skipped.values())
    details = f"<details><summary>Skipped files</summary><ul>{skipped}</ul></details>" if skipped else ""
    return f"<section><h2>Model and data</h2><table class='facts'>{rows}</table>{details}</section>"


def _metrics_section(table: pd.DataFrame, threshold: float) -> str:
    clusters = clusters_of(table)
    intervals = bootstrap_metrics(
        table["label"].to_numpy(), table["probability"].to_numpy(), threshold, clusters=clusters
    )
    rows = "".join(
        f"<tr data-metric='{name}'><th>{_esc(METRICS[name])}</th><td>{_num(value.estimate)}</td>"
        f"<td>{_num(value.low)} &ndash; {_num(value.high)}</td></tr>"
        for name, value in intervals.items()
    )
    patients = len(np.unique(clusters))
    unit = f"the {patients} patients (all films of a drawn patient)" if patients < len(table) else "the films"
    return (
        f"<section><h2>Metrics at threshold {threshold:.3f}</h2><table id='metrics'>"
        f"<tr><th>Metric</th><th>Value</th><th>95% CI</th></tr>{rows}</table>"
        f"<p class='note'>95% confidence intervals: percentile bootstrap, {RESAMPLES} resamples of "
        f"{_esc(unit)} (seed 0).</p></section>"
    )


def _operating_point_section(evaluation: Evaluation, predictor: Predictor) -> str:
    entry = evaluation.metrics.get("operating_point", {})
    rates = {name: Proportion(v["k"], v["n"], v["level"]) for name, v in entry.items() if name != "method"}
    if not rates:
        return ""
    rows = "".join(
        f"<tr data-rate='{name}'><th>{_esc(name.capitalize())}</th><td>{value.k} / {value.n}</td>"
        f"<td>{_num(value.estimate)}</td><td>{_num(value.low)} &ndash; {_num(value.high)}</td></tr>"
        for name, value in rates.items()
    )
    history = predictor.meta.calibration_history
    record = history[-1] if history else None
    claim = ""
    if record is not None and record.target is not None and record.rule:
        metric = record.rule.split("-")[0]
        how = (
            f"its {record.confidence:.0%} lower confidence bound reached {record.bound:.3f}"
            if record.confidence is not None and record.bound is not None
            else "on those films (point rule: no guarantee on new patients)"
        )
        claim = (
            f"<p class='note' id='calibration-target'>Calibrated ({_esc(record.date)}) for {metric} &ge; "
            f"{record.target:g} on {sum(record.films.values())} films of {_esc(', '.join(record.sites))}: "
            f"{_esc(how)}{'; written with --force' if record.forced else ''}.</p>"
        )
    return (
        f"<section><h2>Operating point</h2><table id='operating-point'><tr><th>Rate</th><th>Films right</th>"
        f"<th>Value</th><th>95% CI</th></tr>{rows}</table>{claim}"
        f"<p class='note'>95% intervals: {_esc(entry['method'])}; the patient-bootstrap intervals above "
        "allow for several films of one patient.</p></section>"
    )


def _groups_section(groups: dict[str, dict[str, dict]]) -> str:
    if not groups:
        return ""
    names = {"site": "Site", "view": "View", "sex": "Sex", "age": "Age band (years)"}
    header = "".join(f"<th>{_esc(METRICS.get(m, 'ECE'))}</th>" for m in HEADLINE)
    parts = ["<section><h2>Per site and subgroup</h2>"]
    for column, entries in groups.items():
        rows = []
        others = any("other" in entry for entry in entries.values())
        for name, entry in entries.items():
            cells = "".join(f"<td>{_esc(with_interval(entry, metric))}</td>" for metric in HEADLINE)
            counts = "".join(f"<td>{entry[key]}</td>" for key in ("films", "patients", *OUTPUT_CLASSES))
            if others:
                cells += f"<td>{entry.get(OTHER, 0)}</td>" + "".join(
                    f"<td>{_esc(with_fraction(entry.get('other', {}).get(kind)))}</td>" for kind in KINDS
                )
            note = f" title='{_esc(entry['note'])}'" if "note" in entry else ""
            rows.append(f"<tr data-group='{_esc(name)}'{note}><th>{_esc(name)}</th>{counts}{cells}</tr>")
        classes = "".join(f"<th>{_esc(name)}</th>" for name in OUTPUT_CLASSES)
        extra = (
            f"<th>{OTHER}</th>"
            + "".join(f"<th>{kind} {OTHER} called {OUTPUT_CLASSES[1]}</th>" for kind in KINDS)
            if others
            else ""
        )
        parts.append(
            f"<h3>{_esc(names.get(column, column))}</h3><table id='group-{_esc(column)}'><tr><th>Group</th>"
            f"<th>Films</th><th>Patients</th>{classes}{header}{extra}</tr>{''.join(rows)}"
            "</table>"
        )
    bands = ", ".join(name for _, name in AGE_BANDS)
    parts.append(
        f"<p class='note'>Each with its 95% patient-bootstrap interval. Groups of fewer than {MIN_FILMS} "
        f"films show counts and point values only; a group of one class has no ROC-AUC. Age bands: {bands}; "
        "films without a value form the group 'unknown'.</p></section>"
    )
    return "".join(parts)


def _class_counts(table: pd.DataFrame) -> list[tuple[str, int]]:
    """Films per film class present (OTHER split into clear and ambiguous)."""
    names = film_classes_of(table)
    ambiguous = ambiguous_of(table)
    counts = []
    for name in present_classes(names):
        mine = (names == name).to_numpy()
        if not (mine & ambiguous).any():
            counts.append((name, int(mine.sum())))
            continue
        counts.append((f"{name} (clear)", int((mine & ~ambiguous).sum())))
        counts.append((f"{name} (ambiguous)", int((mine & ambiguous).sum())))
    return counts


def _other_section(other: dict | None, predictor: Predictor) -> str:
    """The fraction of OTHER films called PNEUMONIA, clear and ambiguous apart, overall and per site."""
    if not other:
        return ""
    called = other["called"]
    rows = [("All sites", {kind: other.get(kind) for kind in KINDS}), *other["per_site"].items()]
    body = "".join(
        f"<tr data-site='{_esc(name)}'><th>{_esc(name)}</th>"
        + "".join(f"<td>{_esc(with_fraction(entry.get(kind)))}</td>" for kind in KINDS)
        + "</tr>"
        for name, entry in rows
    )
    trained = (
        f"This model was trained with {OTHER} films as negatives."
        if OTHER in predictor.meta.film_classes
        else f"This model was not trained on {OTHER} films."
    )
    return (
        f"<section id='other'><h2>Other findings: OTHER films called {_esc(called)}</h2>"
        "<table id='other-findings'><tr><th>Site</th><th>Clear OTHER films</th>"
        f"<th>Ambiguous OTHER films</th></tr>{body}</table>"
        f"<p class='note'>Films with another finding (not pneumonia) called {_esc(called)} at the model's "
        f"threshold, with the {_esc(other['method'])}. Ambiguous films are those marked with an opacity "
        "(their findings can look like pneumonia). They are not part of the metrics above, which "
        f"measure the {' and '.join(OUTPUT_CLASSES)} films. {_esc(trained)}</p></section>"
    )


def _plots_section(
    evaluation: Evaluation, labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> str:
    metrics = evaluation.metrics
    reliability = plots.reliability_figure(labels, probabilities)
    reliability.axes[0].set_title(f"ECE {metrics['ece']:.3f}")
    figures = [("Confusion matrix (rows: true class)", plots.confusion_figure(metrics["confusion_matrix"]))]
    if metrics["roc_auc"] is not None:
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
        f"Heat maps ({predictor.meta.explain.describe()}) of the PNEUMONIA logit inside the model's centre "
        "crop, scaled so that its peak equals the film's probability of pneumonia (colour bar 0 to 1): "
        "a confident NORMAL film stays blue, red marks strong evidence on a film called PNEUMONIA."
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


def _localisation_section(evaluation: Evaluation, predictor: Predictor) -> str:
    """With ``evaluate --boxes``: the heat maps against the readers' boxes, with example overlays."""
    found = evaluation.localisation
    if found is None:
        return ""
    from pneumoscan.explain import explain_file, overlay_png

    metrics = found.metrics
    rows = ""
    if metrics["films"]:
        low, high = metrics["hit_rate_interval"]
        rows = (
            f"<tr data-metric='hit_rate'><th>Pointing game: map peak inside a box</th><td>"
            f"{_num(metrics['hit_rate'])} ({_num(low)} &ndash; {_num(high)})</td>"
            f"<td>{_num(metrics['chance_hit_rate'])}</td></tr>"
            f"<tr data-metric='mass_in_boxes'><th>Share of the map's mass inside the boxes</th>"
            f"<td>{_num(metrics['mass_in_boxes'])}</td><td>{_num(metrics['chance_mass_in_boxes'])}</td></tr>"
        )
    films = found.films
    examples = pd.concat([films[films["hit"]].head(LOCALISATION_EXAMPLES // 2), films[~films["hit"]]])
    cards = []
    for row in examples.head(LOCALISATION_EXAMPLES).itertuples():
        explanation = explain_file(predictor, row.path)
        png = overlay_png(explanation, THUMBNAIL_SIDE, boxes=found.boxes_of(row.path))
        verdict = "peak in a box" if row.hit else "peak outside the boxes"
        cards.append(
            f"<figure class='card'>{_img(png, Path(row.path).name)}<figcaption title='{_esc(row.path)}'>"
            f"{_esc(Path(row.path).name)}<br>{verdict}; mass in boxes {row.mass_in_boxes:.2f}"
            "</figcaption></figure>"
        )
    not_measured = (
        f"{metrics['pneumonia_films_without_boxes']} PNEUMONIA films without boxes, "
        f"{metrics['refused']} refused and {metrics['unreadable']} unreadable films were not measured."
    )
    return (
        "<section id='localisation'><h2>Heat maps against the readers' boxes</h2>"
        f"<p class='note'>{metrics['films']} PNEUMONIA films with boxes ({_esc(metrics['boxes'])}); maps: "
        f"{_esc(metrics['map'])}. The pointing game counts the films whose map peaks "
        "inside a box (95% Wilson interval); chance is a uniform map over the model's view, i.e. the "
        f"boxes' share of the view's area. {_esc(not_measured)}</p><table id='localisation-metrics'>"
        f"<tr><th>Measure</th><th>Heat maps</th><th>Chance</th></tr>{rows}</table>"
        "<p class='note'>Examples: boxes and the map's peak (cross) in white.</p>"
        f"<div class='row'>{''.join(cards) or '<p>None.</p>'}</div></section>"
    )


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
