"""The model card's "intended use and limits" in plain words: the one copy shown by the API and the page.

What the limits say about a model (its training sites and films, its calibration, its refusal gate,
synthetic training data) is read from that model's own file (:class:`~pneumoscan.model_file.ModelMeta`),
so the page and ``/v1/model`` cannot describe another model than the one served.
"""

from __future__ import annotations

from pneumoscan.model_file import ModelMeta

INTENDED_USE = (
    "A research and education tool that estimates how likely a chest X-ray shows pneumonia. "
    "It is not a medical device and must not be used to diagnose, treat or triage patients."
)


def model_limits(meta: ModelMeta) -> list[str]:
    """The limits of the model ``meta`` describes, one plain sentence each."""
    return [
        _training_data(meta),
        "It answers one question (pneumonia or not) and does not see other findings.",
        _calibration(meta),
        "The heat map shows which regions pushed the score up; it is not a segmentation of the disease.",
        _refusal(meta),
    ]


def _training_data(meta: ModelMeta) -> str:
    if meta.synthetic_data:
        return (
            "Trained on synthetic shapes (pneumoscan demo), not on radiographs: its probabilities for real "
            "films mean nothing."
        )
    sites = [str(site) for site in meta.metrics.get("sites") or []]
    if not sites:
        return (
            "Its model file does not record what it was trained on; expect it to be wrong on films unlike "
            "its (unknown) training films."
        )
    per_site = meta.metrics.get("validation_per_site") or {}
    described = [
        f"{site} ({per_site[site]['images']} validation films)"
        if "images" in per_site.get(site, {})
        else site
        for site in sites
    ]
    films = meta.metrics.get("train_images")
    counted = f"{films} films from " if films else ""
    where = "one site" if len(sites) == 1 else f"{len(sites)} sites"
    return (
        f"Trained on {counted}{where}: {', '.join(described)}; it may be wrong on films unlike those "
        "(other hospitals' scanners, other patient ages, other kinds of images)."
    )


def _calibration(meta: ModelMeta) -> str:
    if meta.calibration_history:
        last = meta.calibration_history[-1]
        return (
            f"The probability was recalibrated on {last.date} on films of {', '.join(last.sites)} "
            f"({', '.join(f'{count} {name}' for name, count in last.films.items())}); it is not a clinical "
            "likelihood for your patient."
        )
    if meta.temperature == 1.0:
        return (
            "The probability is not calibrated (temperature 1); it is not a clinical likelihood for your "
            "patient."
        )
    return (
        "The probability is calibrated on held-out films of its training sites; it is not a clinical "
        "likelihood for your patient."
    )


def _refusal(meta: ModelMeta) -> str:
    if meta.gate is None:
        return (
            "It has no out-of-distribution check: it answers for any image, chest film or not; the warnings "
            "about an image (colour, blank, thumbnail, odd shape) are simple checks."
        )
    return (
        f"Images its out-of-distribution check scores above {meta.gate.threshold:.3f} are refused; the check "
        "learned frontal chest films from its training films and other images from examples, so an image "
        "it accepts is not necessarily a frontal chest X-ray."
    )
