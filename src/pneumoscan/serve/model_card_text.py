"""The model card's "intended use and limits" in plain words: the one copy shown by the API and the page."""

from __future__ import annotations

INTENDED_USE = (
    "A research and education tool that estimates how likely a chest X-ray shows pneumonia. "
    "It is not a medical device and must not be used to diagnose, treat or triage patients."
)

LIMITS: tuple[str, ...] = (
    "Trained on pediatric chest films (children aged one to five) from a single hospital; it may be "
    "wrong on adults, on other hospitals' scanners and on other kinds of images.",
    "It answers one question (pneumonia or not) and does not see other findings.",
    "The probability is calibrated on held-out films from the same source; it is not a clinical "
    "likelihood for your patient.",
    "The heat map shows which regions pushed the score up; it is not a segmentation of the disease.",
    "Warnings about the image (colour, blank, thumbnail, odd shape) are simple checks: an image without "
    "warnings is not necessarily a chest X-ray.",
)
