"""Interactive API docs at ``/docs`` that work offline: Swagger UI served from an installed package.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so it is a blank page without internet and
needs a policy that trusts that CDN.  Here the assets come from the ``swagger-ui-bundle-v2`` package
(part of the ``serve`` extra) under ``/docs/assets``, and the page starts Swagger UI with a script
file from ``/static``, so the docs' Content-Security-Policy allows this server only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

_log = logging.getLogger("pneumoscan.serve")


def swagger_ui_dir() -> Path | None:
    """The folder of the installed Swagger UI assets, or None when the package is missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


def install_docs(app: FastAPI, static_dir: Path) -> bool:
    """Serve ``/docs`` (page) and ``/docs/assets`` (Swagger UI); False when Swagger UI is not installed."""
    assets = swagger_ui_dir()
    if assets is None:
        _log.warning("no API docs at /docs: pip install swagger-ui-bundle-v2 (or 'pneumoscan[serve]')")
        return False
    app.mount("/docs/assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(static_dir / "docs.html")

    return True
