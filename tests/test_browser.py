"""The page in a real headless Chromium: upload a film, see the probability and the heat map.

Needs the system Chromium at /usr/bin/chromium (Debian: ``apt-get install -y chromium``); the test
is skipped without it.  The browser may only talk to the local server: every other request is
aborted and recorded, and the test fails if there was any.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import served_on_loopback
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
    with served_on_loopback(create_app(Predictor.load(trained_model))) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def offline_page(tmp_path: Path) -> Iterator[Any]:
    """A Chromium page that may reach 127.0.0.1 only; after the block, it must have tried nothing else
    and logged no error."""
    from playwright.sync_api import Route, sync_playwright

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
            yield page
        finally:
            context.close()
    assert foreign == [], f"the page tried to reach other hosts: {foreign}"
    assert problems == [], f"errors in the page: {problems}"


def test_upload_shows_probability_and_heatmap(server_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    image = tmp_path / "chest.png"
    Image.fromarray(synthetic_film(np.random.default_rng(3), True, size=256)).save(image)
    photo = tmp_path / "holiday.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(photo)
    with offline_page(tmp_path) as page:
        page.goto(server_url + "/")
        expect(page.locator("#limits li").first).to_contain_text("synthetic shapes")  # this model's own
        page.set_input_files("#file", image)
        result = page.locator(".result").first
        expect(result.locator(".probability")).to_have_text(PERCENT, timeout=30_000)
        expect(result.locator(".label")).to_have_text(LABEL)
        overlay = result.locator("img.overlay")
        expect(overlay).to_be_visible()
        assert overlay.evaluate("img => img.complete && img.naturalHeight") == 256
        assert "chest.png" in result.locator(".name").inner_text()
        result.locator("button.enlarge").click()  # full size, next to the film
        viewer = page.locator("#viewer")
        expect(viewer).to_be_visible()
        for side in ("#viewer-film", "#viewer-overlay"):
            expect(page.locator(side)).to_be_visible()
            assert page.locator(side).evaluate("img => img.complete && img.naturalHeight") == 256
            assert page.locator(side).evaluate("img => img.getBoundingClientRect().height") > 250
        film_box = page.locator("#viewer-film").bounding_box()
        overlay_box = page.locator("#viewer-overlay").bounding_box()
        assert film_box and overlay_box and overlay_box["x"] >= film_box["x"] + film_box["width"]
        page.set_input_files("#file", photo)
        refusal = page.locator(".result .refusal").first
        expect(refusal.locator(".refusal-title")).to_have_text(
            "Not a chest X-ray this model can judge", timeout=30_000
        )
        expect(refusal.locator(".refusal-reason")).to_contain_text("colour")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)
        page.locator("#viewer-close").click()
        expect(viewer).to_be_hidden()
    assert Image.open(io.BytesIO(SCREENSHOT.read_bytes())).size[0] > 0


def test_the_page_takes_the_class_names_from_the_api(relabelled_model: Path, tmp_path: Path) -> None:
    """A model whose output classes are not NORMAL/PNEUMONIA: the page shows its own names."""
    from conftest import RELABELLED
    from playwright.sync_api import expect

    image = tmp_path / "chest.png"
    Image.fromarray(synthetic_film(np.random.default_rng(3), True, size=128)).save(image)
    with (
        served_on_loopback(create_app(Predictor.load(relabelled_model))) as port,
        offline_page(tmp_path) as page,
    ):
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#model-facts")).to_contain_text("Threshold")  # /v1/model has been read
        page.set_input_files("#file", image)
        label = page.locator(".result .label").first
        expect(label).to_have_text(re.compile(f"^({'|'.join(RELABELLED)})$"), timeout=30_000)
        positive = label.inner_text() == RELABELLED[1]
        expect(label).to_have_class(re.compile("positive" if positive else "negative"))
        expect(page.locator(".result .threshold").first).to_contain_text(f"The label is {RELABELLED[1]} at")


def test_api_docs_render_offline(server_url: str, tmp_path: Path) -> None:
    """/docs draws the API from this server's files alone, under its Content-Security-Policy."""
    from playwright.sync_api import expect

    with offline_page(tmp_path) as page:
        page.goto(server_url + "/docs")
        expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("/v1/predict", exact=True)).to_be_visible()
