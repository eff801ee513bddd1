"""Reading image uploads safely: the size limit holds while the body streams in, and nothing touches disk.

A request whose ``Content-Length`` is over the limit is refused before any of its body is read;
a body without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
The multipart body is parsed by Starlette's parser with its spooling turned off, so uploads stay in
memory (the size limit bounds them) and are never written to a temporary file.  Only
:class:`UploadArchive`, used when the server runs with ``--save-uploads DIR``, writes them out, up to
a size cap for the folder.  :func:`check_pixel_budget` bounds the pixels one request may have decoded,
measured from the image headers before anything is decoded.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from pneumoscan.atomic import atomic_write_bytes
from pneumoscan.data.imageio import decoded_size
from pneumoscan.errors import TooLargeError
from pneumoscan.serve import MAX_FILES

FIELD = "files"
_MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_log = logging.getLogger("pneumoscan.serve")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's base name (for messages only) and its bytes."""

    name: str
    data: bytes


class _InMemoryMultiPartParser(MultiPartParser):
    spool_max_size = sys.maxsize  # never roll an upload over to a temporary file; the body is bounded


async def read_uploads(request: Request, max_bytes: int) -> list[Upload]:
    """The files of a ``multipart/form-data`` request's ``files`` field, in order.

    Raises HTTPException: 415 for another content type, 413 for a body over ``max_bytes``,
    400 for a malformed body and 422 when the field holds no file.
    """
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, f"send the images as multipart/form-data in the field {FIELD!r}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    parser = _InMemoryMultiPartParser(
        request.headers, _bounded(request.stream(), max_bytes), max_files=MAX_FILES, max_fields=MAX_FILES
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"cannot read the multipart upload: {exc.message}") from None
    except ClientDisconnect:
        raise HTTPException(400, "the client went away before the upload was complete") from None
    try:
        files = [item for item in form.getlist(FIELD) if isinstance(item, UploadFile)]
        uploads = [Upload(_display_name(f.filename, i), await f.read()) for i, f in enumerate(files, 1)]
    finally:
        await form.close()
    if not uploads:
        raise HTTPException(422, f"no image: send one or more files in the multipart field {FIELD!r}")
    return uploads


def check_pixel_budget(uploads: list[Upload], budget: int, min_side: int | None, max_pixels: int) -> None:
    """Refuse a request whose images together decode to more than ``budget`` pixels.

    Sizes come from the headers (:func:`~pneumoscan.data.imageio.decoded_size`; a JPEG counts at the
    reduced scale it is decoded at when ``min_side`` is given), so nothing is decoded to find out;
    ``max_pixels`` is the server's limit for one image. Raises
    :class:`~pneumoscan.errors.TooLargeError` (413).
    """
    total = 0
    for upload in uploads:
        width, height = decoded_size(upload.data, min_side=min_side, max_pixels=max_pixels)
        total += width * height
    if total > budget:
        raise TooLargeError(
            f"these {len(uploads)} images hold {total / 1e6:.1f} million pixels together, over this "
            f"server's budget of {budget / 1e6:g} million per request; send fewer or smaller images at a time"
        )


class UploadArchive:
    """The ``--save-uploads`` folder: a copy of each upload under a safe, unique name, up to a size cap.

    Once the folder holds ``max_bytes`` (counting what was there at start), further uploads are not
    kept -- said once in the server log -- and predictions go on.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.used = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
        self._lock = threading.Lock()  # uploads are saved from the decoding threads
        self._full_said = False

    def save(self, upload: Upload) -> Path | None:
        """Write a copy of ``upload``; ``None`` when the folder is at its cap."""
        with self._lock:
            if self.used + len(upload.data) > self.max_bytes:
                if not self._full_said:
                    _log.warning(
                        "%s holds %.1f MiB; with this upload it would pass its cap of %g MiB: "
                        "further uploads are not kept",
                        self.directory,
                        self.used / 2**20,
                        self.max_bytes / 2**20,
                    )
                    self._full_said = True
                return None
            self.used += len(upload.data)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        safe = _UNSAFE.sub("_", upload.name).strip("._") or "upload"
        target = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}-{safe}"
        atomic_write_bytes(target, upload.data)
        return target


async def _bounded(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        yield chunk


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"upload is over the {max_bytes / 2**20:g} MiB limit; send smaller files")


def _display_name(filename: str | None, number: int) -> str:
    """The client's file name without any folders or control characters, shortened; never empty."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:_MAX_NAME] or f"upload-{number}"
