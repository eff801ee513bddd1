"""Headers and request checks that every answer of the server gets.

* Security headers on every response -- the page, ``/static``, ``/docs`` and the JSON API alike:
  a Content-Security-Policy (the page's own, a slightly wider one for the API docs, and "nothing at
  all" for everything else), ``nosniff``, no referrer, no framing.
* Host check (DNS rebinding): with ``allowed_hosts``, a request whose ``Host`` header names another
  host is refused, so a web page whose domain was re-pointed at 127.0.0.1 cannot reach the server.
* Origin check: a POST from a web page of another origin (a cross-origin multipart form needs no
  CORS preflight) is refused; clients that send no ``Origin`` (curl, scripts) are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DOCS_CSP = (  # Swagger UI sets inline style attributes
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def content_security_policy(path: str) -> str:
    """The policy for a response to ``path``."""
    if path == "/" or path.startswith("/static/"):
        return PAGE_CSP
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_CSP
    return DATA_CSP


def install_security(app: FastAPI, allowed_hosts: Collection[str] | None = None) -> None:
    """Add the header and the Host/Origin checks to every request of ``app``.

    ``allowed_hosts``: host names (without port) the ``Host`` header may name; ``None`` allows any.
    """
    allowed = None if allowed_hosts is None else {host.lower().strip("[]") for host in allowed_hosts}

    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        refusal = _refusal(request, allowed)
        response = refusal or await call_next(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy(request.url.path))
        for name, value in COMMON_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _refusal(request: Request, allowed: set[str] | None) -> Response | None:
    host = request.headers.get("host", "")
    if allowed is not None and _host_name(host) not in allowed:
        return JSONResponse(
            {"detail": f"host {host!r} is not served here; use one of {', '.join(sorted(allowed))}"},
            status_code=421,
        )
    origin = request.headers.get("origin")
    cross_origin = origin is not None and urlsplit(origin).netloc.lower() != host.lower()
    if request.method in _UNSAFE_METHODS and cross_origin:
        return JSONResponse(
            {"detail": f"cross-origin request refused: origin {origin!r} is not this server ({host})"},
            status_code=403,
        )
    return None


def _host_name(host: str) -> str:
    """``example.org`` from ``example.org:8000``, ``::1`` from ``[::1]:8000``."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()
