"""The page in a real headless Chromium: upload a film, see the probability and the heat map.

Needs the system Chromium at /usr/bin/chromium (Debian: ``apt-get install -y chromium``); the test
is skipped without it.  The browser may only talk to the local server: every other request is
aborted and recorded, and the test fails if there was any.
"""

from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import uvicorn
from PIL import Image

from pneumoscan.predict import Predictor
from pneumoscan.serve.app import create_app
from pneumoscan.synthetic import synthetic_film

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PERCENT = re.compile(r"^\d{1,3}\.\d %$")
LABEL = re.compile(r"^(NORMAL|PNEUMONIA)$")
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser.png"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (install it with: apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def server_url(trained_model: Path) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, served by uvicorn in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(Predictor.load(trained_model)), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_upload_shows_probability_and_heatmap(server_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import Route, expect, sync_playwright

    image = tmp_path / "chest.png"
    Image.fromarray(synthetic_film(np.random.default_rng(3), True, size=256)).save(image)
    foreign: list[str] = []
    problems: list[str] = []

    def local_only(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context.route("**/*", local_only)
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(server_url + "/")
            expect(page.locator("#limits li").first).to_contain_text("pediatric")
            page.set_input_files("#file", image)
            result = page.locator(".result").first
            expect(result.locator(".probability")).to_have_text(PERCENT, timeout=30_000)
            expect(result.locator(".label")).to_have_text(LABEL)
            overlay = result.locator("img.overlay")
            expect(overlay).to_be_visible()
            assert overlay.evaluate("img => img.complete && img.naturalWidth") == 256
            assert "chest.png" in result.locator(".name").inner_text()
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=SCREENSHOT, full_page=True)
        finally:
            context.close()
    assert foreign == [], f"the page tried to reach other hosts: {foreign}"
    assert problems == [], f"errors in the page: {problems}"
    assert Image.open(io.BytesIO(SCREENSHOT.read_bytes())).size[0] > 0


def test_api_docs_render_offline(server_url: str, tmp_path: Path) -> None:
    """/docs draws the API from this server's files alone, under its Content-Security-Policy."""
    from playwright.sync_api import Route, expect, sync_playwright

    foreign: list[str] = []
    problems: list[str] = []

    def local_only(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context.route("**/*", local_only)
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(server_url + "/docs")
            expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("/v1/predict", exact=True)).to_be_visible()
        finally:
            context.close()
    assert foreign == [] and problems == []
