"""From uploads to predictions on every core: decoding on a thread pool, the engine micro-batched.

Each upload is decoded, checked (:mod:`pneumoscan.sanity`) and prepared on a pool with one thread
per core, so a full-resolution image lives only inside one pool thread; the small prepared image
then joins the next engine batch (:class:`~pneumoscan.serve.batching.MicroBatcher`, up to one
engine call per core at once).  Heat maps (torch engine only) are computed on the pool by
:func:`pneumoscan.explain.explain_image`.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pneumoscan.data.imageio import DecodedImage, read_image_bytes
from pneumoscan.errors import ImageReadError
from pneumoscan.predict import Prediction, Predictor
from pneumoscan.preprocess import prepare, source_side
from pneumoscan.sanity import check_radiograph
from pneumoscan.serve.batching import MicroBatcher
from pneumoscan.serve.errors import error_status
from pneumoscan.serve.uploads import Upload, UploadArchive

WEB_OVERLAY_SIDE = 512  # px: enough for the page, and a quarter of the full overlay's encoding time
NO_HEATMAP_ENGINE = "heat maps need the torch engine; this server runs the {engine} engine"


@dataclass
class Outcome:
    """A prediction for one upload, its heat-map PNG when asked for, and the HTTP status of its error."""

    prediction: Prediction
    heatmap_png: bytes | None = None
    heatmap_note: str | None = None
    status: int = 200


class InferenceService:
    """Predicts uploads for the web API; concurrent requests share threads and engine batches."""

    def __init__(
        self, predictor: Predictor, *, max_pixels: int, archive: UploadArchive | None = None
    ) -> None:
        self.predictor = predictor
        self.max_pixels = max_pixels
        self.archive = archive
        self.heatmaps = predictor.engine.name == "torch"
        workers = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pneumoscan-decode")
        self._batcher = MicroBatcher(predictor.probabilities, workers=workers)

    async def predict(self, uploads: list[Upload], heatmap: bool = False) -> list[Outcome]:
        """One outcome per upload, in order; unreadable uploads come back with an error."""
        return list(await asyncio.gather(*(self._predict_one(upload, heatmap) for upload in uploads)))

    def close(self) -> None:
        """Stop the worker threads (after the work in progress)."""
        self._batcher.close()
        self._pool.shutdown(wait=True)

    async def _predict_one(self, upload: Upload, heatmap: bool) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            if heatmap and self.heatmaps:
                return await loop.run_in_executor(self._pool, self._explain, upload)
            prepared, warnings = await loop.run_in_executor(self._pool, self._prepare, upload)
        except ImageReadError as exc:
            return Outcome(Prediction(upload.name, error=str(exc)), status=error_status(exc))
        probability = float((await self._batcher(prepared[None]))[0])
        prediction = self.predictor.result(upload.name, probability, warnings)
        note = NO_HEATMAP_ENGINE.format(engine=self.predictor.engine.name) if heatmap else None
        return Outcome(prediction, heatmap_note=note)

    def _decode(self, upload: Upload, *, for_model: bool = True) -> DecodedImage:
        """The upload decoded for the model (as ``read_for_model``) or at full resolution."""
        if self.archive is not None and for_model:
            self.archive.save(upload)
        min_side = source_side(self.predictor.meta.preprocess) if for_model else None
        return read_image_bytes(upload.data, upload.name, max_pixels=self.max_pixels, min_side=min_side)

    def _prepare(self, upload: Upload) -> tuple[np.ndarray, list[str]]:
        image = self._decode(upload)
        return prepare(image, self.predictor.meta.preprocess), check_radiograph(image)

    def _explain(self, upload: Upload) -> Outcome:
        from pneumoscan.explain import explain_image, overlay_png

        model_image = self._decode(upload)
        shown = self._decode(upload, for_model=False)
        explanation = explain_image(self.predictor, shown, upload.name, model_image=model_image)
        return Outcome(explanation.prediction, heatmap_png=overlay_png(explanation, WEB_OVERLAY_SIDE))
