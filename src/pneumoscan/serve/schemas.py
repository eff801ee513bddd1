"""The JSON shapes of the API (they also document it at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ImageResult(BaseModel):
    """The answer for one uploaded image; ``error`` is set (and the scores are empty) if it was unusable."""

    name: str = Field(description="the uploaded file's name")
    probability: float | None = Field(description="calibrated probability of pneumonia, 0 to 1")
    label: str | None = Field(description="class at the model's threshold; null when the image was refused")
    threshold: float | None = Field(description="probability at or above which the label is PNEUMONIA")
    model_id: str
    warnings: list[str] = Field(description="reasons to doubt that the image is a usable chest X-ray")
    error: str | None = Field(description="why the image could not be used")
    ood_score: float | None = Field(
        None, description="out-of-distribution score of the model's gate, 0 to 1 (null without a gate)"
    )
    out_of_distribution: bool = Field(
        False, description="the image is not a frontal chest X-ray this model can judge (see refusal_reason)"
    )
    refused: bool = Field(False, description="the image was refused for being out of distribution (no label)")
    refusal_reason: str = Field("", description="why the image is out of distribution")
    heatmap: str | None = Field(
        None,
        description="with heatmap=true: base64 PNG of the model's heat map over the image, with a colour "
        "bar; its peak is the probability of pneumonia, so a confident NORMAL film stays blue",
    )
    film: str | None = Field(
        None, description="with heatmap=true: base64 grayscale PNG of the film itself, the overlay's size"
    )
    heatmap_note: str | None = Field(None, description="why there is no heat map, when one was asked for")


class PredictResponse(BaseModel):
    """One result per uploaded file, in upload order."""

    model_id: str
    results: list[ImageResult]


class UploadLimits(BaseModel):
    """What this server accepts."""

    max_upload_bytes: int
    max_pixels: int
    max_files: int
    formats: list[str]


class ModelInfo(BaseModel):
    """The model card: what the model is, how it was measured, and what it must not be used for."""

    model_id: str
    name: str
    architecture: str
    architecture_options: dict[str, Any]
    engine: str
    heatmaps: bool = Field(description="whether heatmap=true can return heat maps (torch engine only)")
    class_names: tuple[str, str] = Field(
        description="the model's output classes (labels), the positive class (pneumonia) last"
    )
    film_classes: list[str] = Field(description="the kinds of film the model was trained on")
    preprocessing: dict[str, Any]
    threshold: float
    threshold_rule: str
    temperature: float
    gate: dict[str, Any] | None = Field(
        description="the out-of-distribution gate: threshold, rule, validation figures (null: no gate)"
    )
    metrics: dict[str, Any]
    created: str
    package_version: str = Field(description="pneumoscan version that saved the model")
    server_version: str = Field(description="pneumoscan version serving it")
    intended_use: str
    limits: list[str]
    upload_limits: UploadLimits


class Health(BaseModel):
    """Liveness: the server is up and has its model loaded."""

    status: Literal["ok"] = "ok"
    model_id: str
    engine: str


class ErrorDetail(BaseModel):
    """Every error answer: one line that says what went wrong and what to do."""

    detail: str
