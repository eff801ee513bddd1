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

from pneumoscan.data.imageio import DecodedImage, read_image_bytes
from pneumoscan.errors import ImageReadError, InputRefusedError
from pneumoscan.predict import Prediction, Predictor
from pneumoscan.preprocess import ModelInput, model_input, source_side
from pneumoscan.serve.batching import MicroBatcher
from pneumoscan.serve.errors import error_status
from pneumoscan.serve.uploads import Upload, UploadArchive

NO_HEATMAP_ENGINE = "heat maps need the torch engine; this server runs the {engine} engine"
REFUSED = "no heat map: the image was refused (ask with refuse=false to judge it anyway)"


@dataclass
class Outcome:
    """A prediction for one upload, its heat-map PNG (and the film's, to show beside it) when asked
    for, and the HTTP status of its error."""

    prediction: Prediction
    heatmap_png: bytes | None = None
    film_png: bytes | None = None
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
        self._batcher = MicroBatcher(predictor.scores, workers=workers)

    async def predict(
        self, uploads: list[Upload], heatmap: bool = False, refuse: bool = True
    ) -> list[Outcome]:
        """One outcome per upload, in order; unreadable uploads come back with an error.

        ``refuse``: refuse out-of-distribution images (no label, no heat map); False judges them anyway.
        """
        jobs = (self._predict_one(upload, heatmap, refuse) for upload in uploads)
        return list(await asyncio.gather(*jobs))

    def close(self) -> None:
        """Stop the worker threads (after the work in progress)."""
        self._batcher.close()
        self._pool.shutdown(wait=True)

    async def _predict_one(self, upload: Upload, heatmap: bool, refuse: bool) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self._pool, self._prepare, upload, refuse)
        except InputRefusedError as exc:
            refused = Prediction.of_refused_file(upload.name, exc)
            return Outcome(refused, heatmap_note=REFUSED if heatmap else None)
        except ImageReadError as exc:
            return Outcome(Prediction(upload.name, error=str(exc)), status=error_status(exc))
        scores = (await self._batcher(prepared.pixels[None]))[0]
        prediction = self.predictor.result(upload.name, scores, prepared, refuse)
        if not heatmap:
            return Outcome(prediction)
        if prediction.refused:
            return Outcome(prediction, heatmap_note=REFUSED)
        if not self.heatmaps:
            note = NO_HEATMAP_ENGINE.format(engine=self.predictor.engine.name)
            return Outcome(prediction, heatmap_note=note)
        overlay, film = await loop.run_in_executor(self._pool, self._heatmap, upload)
        return Outcome(prediction, heatmap_png=overlay, film_png=film)

    def _decode(
        self, upload: Upload, *, for_model: bool = True, accept_refused: bool = False
    ) -> DecodedImage:
        """The upload decoded for the model (as ``read_for_model``) or at full resolution."""
        if self.archive is not None and for_model:
            self.archive.save(upload)
        min_side = source_side(self.predictor.meta.preprocess) if for_model else None
        return read_image_bytes(
            upload.data,
            upload.name,
            max_pixels=self.max_pixels,
            min_side=min_side,
            accept_refused=accept_refused,
        )

    def _prepare(self, upload: Upload, refuse: bool) -> ModelInput:
        return model_input(self._decode(upload, accept_refused=not refuse), self.predictor.meta.preprocess)

    def _heatmap(self, upload: Upload) -> tuple[bytes, bytes]:
        """The heat-map overlay PNG and the film's PNG, to show side by side."""
        from pneumoscan.explain import explain_image, film_png, overlay_png

        model_image = self._decode(upload, accept_refused=True)
        shown = self._decode(upload, for_model=False, accept_refused=True)
        explanation = explain_image(self.predictor, shown, upload.name, model_image=model_image)
        return overlay_png(explanation), film_png(shown)  # the film's resolution, up to 1024 px a side
