"""Every error answer is JSON ``{"detail": "one line"}`` with a fitting status, never a stack trace.

400 bad request or unreadable image, 403 cross-origin request, 408 body too slow, 413 upload or
image too large (or over the request's pixel budget), 415 not an image (or not a multipart upload),
421 a Host this server does not answer for, 422 invalid parameters, 503 too many requests in
progress, 500 for anything unexpected (a generic message; the traceback goes to the server log
only).  Input errors map to a status by their class (:func:`error_status`), never by their text.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pneumoscan.errors import PneumoscanError, TooLargeError, UnsupportedInputError
from pneumoscan.serve.security import COMMON_HEADERS, content_security_policy

INTERNAL_ERROR = "internal server error; the details are in the server log"


def error_status(exc: PneumoscanError) -> int:
    """HTTP status for an input error, by its class: 413 too large, 415 unsupported, else 400."""
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, UnsupportedInputError):
        return 415
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors and unexpected exceptions with a one-line JSON ``detail``."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(PneumoscanError)
    async def input_error(_request: Request, exc: PneumoscanError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=error_status(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, _exc: Exception) -> JSONResponse:
        # answered outside the middleware stack, so it sets the security headers itself
        headers = {**COMMON_HEADERS, "Content-Security-Policy": content_security_policy(request.url.path)}
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500, headers=headers)
