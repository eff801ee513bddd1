"""The FastAPI application: the page at ``/``, the JSON API under ``/v1``, ``/health`` and ``/docs``.

The page (``serve/static``) is self-contained: no CDN, fonts or scripts from elsewhere, and its
Content-Security-Policy only lets it talk to this server; the API docs at ``/docs`` are served from
an installed Swagger UI (:mod:`~pneumoscan.serve.docs`), so they work offline too.  Every response
carries security headers, and Host and Origin are checked (:mod:`~pneumoscan.serve.security`).
Each upload request is bounded: its body size and the time it takes to arrive, the pixels its
images decode to, and the number of requests in flight (:mod:`~pneumoscan.serve.limits`).
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from pneumoscan import __version__
from pneumoscan.data.imageio import FORMATS
from pneumoscan.predict import Predictor
from pneumoscan.preprocess import source_side
from pneumoscan.serve import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_REQUEST_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_SAVE_UPLOADS_MAX_BYTES,
    MAX_FILES,
)
from pneumoscan.serve.docs import install_docs
from pneumoscan.serve.errors import install_error_handlers
from pneumoscan.serve.inference import InferenceService, Outcome
from pneumoscan.serve.limits import InFlightLimit, within
from pneumoscan.serve.model_card_text import INTENDED_USE, model_limits
from pneumoscan.serve.schemas import (
    ErrorDetail,
    Health,
    ImageResult,
    ModelInfo,
    PredictResponse,
    UploadLimits,
)
from pneumoscan.serve.security import install_security
from pneumoscan.serve.uploads import FIELD, UploadArchive, check_pixel_budget, read_uploads

STATIC_DIR = Path(__file__).with_name("static")
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"1 to {MAX_FILES} chest X-rays: JPEG, PNG or DICOM",
                        }
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorDetail, "description": text}
    for code, text in {
        400: "malformed upload, or no image could be decoded",
        403: "a cross-origin request from a web page of another site",
        408: "the upload did not arrive in time",
        413: "upload or image too large, or over the request's pixel budget",
        415: "not a multipart upload, or not an image",
        422: "invalid parameters or no file",
        500: "unexpected server error",
        503: "too many requests in progress; retry",
    }.items()
}


def create_app(
    predictor: Predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    save_uploads_dir: str | os.PathLike[str] | None = None,
    save_uploads_max_bytes: int = DEFAULT_SAVE_UPLOADS_MAX_BYTES,
    allowed_hosts: Collection[str] | None = None,
) -> FastAPI:
    """The web app serving ``predictor``.

    ``max_upload_bytes`` bounds a request body (all its files) and ``body_timeout`` the seconds it
    may take to arrive; ``max_pixels`` bounds each decoded image and ``max_request_pixels`` all
    images of a request together; at most ``max_in_flight`` upload requests are worked on at once.
    Uploads are kept in memory only, unless ``save_uploads_dir`` is given (up to
    ``save_uploads_max_bytes`` in that folder).  ``allowed_hosts``: the host names the ``Host``
    header may name (``None``: any).
    """
    archive = None
    if save_uploads_dir is not None:
        archive = UploadArchive(Path(save_uploads_dir), save_uploads_max_bytes)
    service = InferenceService(predictor, max_pixels=max_pixels, archive=archive)
    info = _model_info(service, max_upload_bytes, max_pixels)
    model_id = predictor.meta.model_id()
    in_flight = InFlightLimit(max_in_flight)
    model_side = source_side(predictor.meta.preprocess)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="pneumoscan",
        version=__version__,
        description=f"Pneumonia probability for chest X-rays. {INTENDED_USE}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_security(app, allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app, STATIC_DIR)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health")
    async def health() -> Health:
        """The server is up and its model is loaded."""
        return Health(model_id=model_id, engine=predictor.engine.name)

    @app.get("/v1/model")
    async def model() -> ModelInfo:
        """The model card: architecture, preprocessing, calibration, metrics, intended use and limits."""
        return info

    @app.post("/v1/predict", openapi_extra=_UPLOAD_BODY, responses=_ERRORS)
    async def predict(
        request: Request,
        heatmap: Annotated[bool, Query(description="add a heat-map overlay PNG (base64) per image")] = False,
        refuse: Annotated[
            bool,
            Query(description="refuse images that are no chest X-ray the model can judge (false: judge)"),
        ] = True,
    ) -> PredictResponse:
        """Pneumonia probability, label and input warnings for each uploaded image.

        When no file can be used the request fails with the first file's error; otherwise
        unreadable files come back with ``error`` set.
        """
        uploads = await within(body_timeout, read_uploads(request, max_upload_bytes))
        async with in_flight.slot():  # from the body's arrival: slow senders cannot take every slot
            check_pixel_budget(uploads, max_request_pixels, None if heatmap else model_side, max_pixels)
            outcomes = await service.predict(uploads, heatmap, refuse)
        failed = [outcome for outcome in outcomes if outcome.prediction.error]
        if len(failed) == len(outcomes):
            raise HTTPException(failed[0].status, "; ".join(str(o.prediction.error) for o in failed))
        return PredictResponse(model_id=model_id, results=[_result(o, model_id) for o in outcomes])

    return app


def _result(outcome: Outcome, model_id: str) -> ImageResult:
    p = outcome.prediction
    return ImageResult(
        name=p.path,
        probability=p.probability,
        label=p.label,
        threshold=p.threshold,
        model_id=model_id,
        warnings=p.warnings,
        error=p.error,
        ood_score=p.ood_score,
        out_of_distribution=p.out_of_distribution,
        refused=p.refused,
        refusal_reason=p.refusal_reason,
        heatmap=_base64(outcome.heatmap_png),
        film=_base64(outcome.film_png),
        heatmap_note=outcome.heatmap_note,
    )


def _base64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")


def _model_info(service: InferenceService, max_upload_bytes: int, max_pixels: int) -> ModelInfo:
    meta = service.predictor.meta
    upload_limits = UploadLimits(
        max_upload_bytes=max_upload_bytes, max_pixels=max_pixels, max_files=MAX_FILES, formats=list(FORMATS)
    )
    return ModelInfo(
        model_id=meta.model_id(),
        name=meta.name,
        architecture=meta.model.architecture,
        architecture_options=meta.model.options,
        engine=service.predictor.engine.name,
        heatmaps=service.heatmaps,
        class_names=meta.class_names,
        film_classes=list(meta.film_classes),
        preprocessing=meta.preprocess.model_dump(),
        threshold=meta.threshold,
        threshold_rule=meta.threshold_rule,
        temperature=meta.temperature,
        gate=None if meta.gate is None else _finite(meta.gate.model_dump()),
        metrics=_finite(meta.metrics),
        created=meta.created,
        package_version=meta.package_version,
        server_version=__version__,
        intended_use=INTENDED_USE,
        limits=model_limits(meta),
        upload_limits=upload_limits,
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (not valid JSON) replaced by ``None``, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
