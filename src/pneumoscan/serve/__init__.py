"""The web page and JSON API of ``pneumoscan serve`` (needs the ``serve`` extra: FastAPI and uvicorn).

>>> from pneumoscan import Predictor
>>> from pneumoscan.serve import create_app
>>> app = create_app(Predictor.load())      # run it with: uvicorn.run(app, host="127.0.0.1")

The limits below are the safe defaults; this module imports nothing heavy, so the command line
can show them in its help without loading FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
"""Largest request body accepted (all files of one request together)."""
DEFAULT_MAX_PIXELS = 30_000_000
"""Largest image accepted, in pixels: above any real chest film (43 cm at 0.1 mm is 4300 x 4300)
and below the decoder's general limit, because a server decodes several uploads at once."""
MAX_FILES = 16
"""Most files in one request."""
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000
"""Most pixels the images of one request may decode to together (a JPEG counts at the scale it is
decoded at for the model): sixteen 6-megapixel films, or three films at the per-image limit."""
DEFAULT_MAX_IN_FLIGHT = 16
"""Most upload requests worked on at once; more are answered 503 at once instead of queueing."""
DEFAULT_BODY_TIMEOUT_S = 30.0
"""Seconds a client may take to send its request body."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Seconds a connection may take to send complete request headers (after opening, or after an answer)."""
DEFAULT_SAVE_UPLOADS_MAX_BYTES = 2**30
"""Cap of the ``--save-uploads`` folder."""

if TYPE_CHECKING:
    from pneumoscan.serve.app import create_app

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_REQUEST_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_SAVE_UPLOADS_MAX_BYTES",
    "MAX_FILES",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from pneumoscan.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'pneumoscan.serve' has no attribute {name!r}")
