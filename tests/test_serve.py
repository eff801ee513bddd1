"""The web API: predictions, heat maps, the model card, limits, error answers and micro-batching."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import served_on_loopback
from dicom_factory import write_deflated_dicom, write_dicom
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.cli import main
from pneumoscan.predict import Predictor
from pneumoscan.serve import MAX_FILES
from pneumoscan.serve.app import create_app
from pneumoscan.serve.batching import MicroBatcher
from pneumoscan.serve.model_card_text import INTENDED_USE, model_limits
from pneumoscan.synthetic import synthetic_film


def film(pneumonia: bool = True, seed: int = 0) -> np.ndarray:
    return synthetic_film(np.random.default_rng(seed), pneumonia, size=96)


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def predictor(trained_model: Path) -> Predictor:
    return Predictor.load(trained_model)


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor)) as test_client:
        yield test_client


def post(client: TestClient, *files: tuple[str, bytes], heatmap: bool = False, refuse: bool = True):
    return client.post(
        "/v1/predict",
        params={"heatmap": str(heatmap).lower(), "refuse": str(refuse).lower()},
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def test_health_and_model_card(client: TestClient, predictor: Predictor) -> None:
    health = client.get("/health").json()
    assert health == {"status": "ok", "model_id": predictor.meta.model_id(), "engine": "torch"}
    model = client.get("/v1/model").json()
    assert model["model_id"] == predictor.meta.model_id()
    assert model["architecture"] == "pneumo-resnet"
    assert model["threshold"] == pytest.approx(predictor.threshold)
    assert model["threshold_rule"] and model["temperature"] > 0 and model["created"]
    assert model["preprocessing"]["image_size"] == 64
    assert "validation" in model["metrics"] and model["heatmaps"] is True
    assert model["intended_use"] == INTENDED_USE and "not a medical device" in INTENDED_USE
    # the limits describe this model (synthetic data, its gate), not another one
    assert model["limits"] == model_limits(predictor.meta)
    assert "synthetic shapes" in model["limits"][0] and "pediatric" not in " ".join(model["limits"])
    assert f"above {predictor.meta.gate.threshold:.3f} are refused" in model["limits"][-1]
    assert model["upload_limits"]["max_files"] >= 1


def test_predicts_jpeg_png_and_dicom_in_one_request(
    client: TestClient, predictor: Predictor, tmp_path: Path
) -> None:
    dicom = write_dicom(tmp_path / "film.dcm", film(seed=2)).read_bytes()
    response = post(
        client,
        ("a.jpeg", encode(film(seed=0), "JPEG")),
        ("b.png", encode(film(False, seed=1), "PNG")),
        ("c.dcm", dicom),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["name"] for r in body["results"]] == ["a.jpeg", "b.png", "c.dcm"]
    for result in body["results"]:
        assert 0.0 <= result["probability"] <= 1.0 and result["error"] is None
        assert result["label"] == predictor.label_of(result["probability"])
        assert result["threshold"] == pytest.approx(predictor.threshold)
        assert result["model_id"] == body["model_id"] == predictor.meta.model_id()
        assert result["warnings"] == [] and result["heatmap"] is None
    expected = predictor.predict_files([tmp_path / "film.dcm"])[0].probability
    assert body["results"][2]["probability"] == pytest.approx(expected, abs=1e-5)


def test_heatmap_is_a_decodable_png(client: TestClient) -> None:
    response = post(client, ("film.png", encode(film(), "PNG")), heatmap=True)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    overlay = Image.open(io.BytesIO(base64.b64decode(result["heatmap"])))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    assert overlay.size[1] == 96 and overlay.size[0] > 96  # the film, then a colour bar
    film_png = Image.open(io.BytesIO(base64.b64decode(result["film"])))
    assert film_png.mode == "L" and film_png.size == (96, 96)
    assert 0.0 <= result["probability"] <= 1.0 and result["heatmap_note"] is None


def test_large_jpeg_gets_the_same_probability_as_predict_files(
    client: TestClient, predictor: Predictor, tmp_path: Path
) -> None:
    """Uploads are decoded like files (large JPEGs at reduced scale), with and without a heat map."""
    path = tmp_path / "large.jpeg"
    Image.fromarray(film(seed=4)).resize((768, 768)).save(path, quality=90)
    expected = predictor.predict_files([path])[0].probability
    for heatmap in (False, True):
        result = post(client, ("large.jpeg", path.read_bytes()), heatmap=heatmap).json()["results"][0]
        assert result["probability"] == pytest.approx(expected, abs=1e-5)
    overlay = Image.open(io.BytesIO(base64.b64decode(result["heatmap"])))
    assert max(overlay.size) > 96 * 2  # drawn on the full-resolution upload, not the reduced one


def test_colour_image_is_refused_unless_asked(client: TestClient) -> None:
    colour = np.zeros((96, 96, 3), np.uint8)
    colour[..., 0] = 255
    result = post(client, ("red.png", encode(colour, "PNG"))).json()["results"][0]
    assert result["refused"] and result["label"] is None and "colour" in result["refusal_reason"]
    anyway = post(client, ("red.png", encode(colour, "PNG")), refuse=False).json()["results"][0]
    assert (
        not anyway["refused"] and anyway["out_of_distribution"] and anyway["label"] in ("NORMAL", "PNEUMONIA")
    )


def test_small_image_warnings_are_returned(client: TestClient) -> None:
    result = post(client, ("tiny.png", encode(film(seed=5)[:40, :40], "PNG"))).json()["results"][0]
    assert any("thumbnail" in warning for warning in result["warnings"])


def test_without_torch_engine_heatmap_is_null_with_a_note(predictor: Predictor) -> None:
    class OnnxLike:
        name = "onnx"
        meta = predictor.meta
        run = staticmethod(predictor.engine.run)

    with TestClient(create_app(Predictor(OnnxLike()))) as client:
        assert client.get("/v1/model").json()["heatmaps"] is False
        response = post(client, ("film.png", encode(film(), "PNG")), heatmap=True)
    result = response.json()["results"][0]
    assert response.status_code == 200 and result["probability"] is not None
    assert result["heatmap"] is None and "torch engine" in result["heatmap_note"]


def test_one_unreadable_file_among_good_ones_is_reported_per_file(client: TestClient) -> None:
    response = post(client, ("good.png", encode(film(), "PNG")), ("notes.jpeg", b"just some text\n"))
    assert response.status_code == 200
    good, bad = response.json()["results"]
    assert good["error"] is None and bad["probability"] is None
    assert "notes.jpeg" in bad["error"] and "not a readable image" in bad["error"]


def test_text_named_jpeg_is_415(client: TestClient) -> None:
    response = post(client, ("photo.jpeg", b"hello, this is not a picture"))
    assert response.status_code == 415
    assert "photo.jpeg" in response.json()["detail"] and "not a readable image" in response.json()["detail"]


def test_decompression_bomb_is_refused(client: TestClient) -> None:
    response = post(client, ("bomb.png", png_header_only(100_000, 100_000)))
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_too_many_pixels_is_413(predictor: Predictor) -> None:
    with TestClient(create_app(predictor, max_pixels=5000)) as client:
        response = post(client, ("big.png", encode(film(), "PNG")))
    assert response.status_code == 413
    assert "96x96 pixels, above the 5000-pixel limit" in response.json()["detail"]


def test_deflate_bomb_is_413_without_inflating_it(predictor: Predictor, tmp_path: Path) -> None:
    import tracemalloc

    from pneumoscan.data.imageio import max_dataset_bytes

    limit = max_dataset_bytes(5000)
    bomb = write_deflated_dicom(tmp_path / "bomb.dcm", film(), padding_mib=limit // 2**20 + 8).read_bytes()
    with TestClient(create_app(predictor, max_pixels=5000)) as client:
        tracemalloc.start()
        try:
            response = post(client, ("bomb.dcm", bomb))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert response.status_code == 413
    assert "deflated DICOM data set inflates to over" in response.json()["detail"]
    assert peak < limit / 4


def test_oversize_upload_is_413(predictor: Predictor) -> None:
    with TestClient(create_app(predictor, max_upload_bytes=4096)) as client:
        response = post(client, ("noise.png", encode(film(), "BMP")))
        assert response.status_code == 413 and "limit" in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
            yield b"--b\r\nContent-Disposition: form-data; name=files; filename=x.png\r\n\r\n"
            yield from (b"\0" * 1024 for _ in range(8))

        response = client.post(
            "/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert response.status_code == 413 and "limit" in response.json()["detail"]


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"json": {"files": []}}, 415, "multipart/form-data"),
        ({"data": {"other": "x"}, "files": {"other_file": ("a.png", b"x")}}, 422, "no image"),
        ({"params": {"heatmap": "maybe"}, "files": {"files": ("a.png", b"x")}}, 422, "heatmap"),
        ({"content": b"--b\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "boundary"),
        ({"files": [("files", (f"{i}.png", b"x")) for i in range(MAX_FILES + 1)]}, 400, "Too many files"),
    ],
)
def test_bad_requests_get_one_line_json(client: TestClient, kwargs: dict, status: int, words: str) -> None:
    response = client.post("/v1/predict", **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail


def test_unexpected_error_is_a_generic_500(predictor: Predictor) -> None:
    class Broken:
        name = "torch"
        meta = predictor.meta

        def logits(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("secret internals")

    app = create_app(Predictor(Broken()))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = post(client, ("film.png", encode(film(), "PNG")))
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error; the details are in the server log"}
    assert "secret" not in response.text and "Traceback" not in response.text


def test_uploads_are_never_written_to_disk_by_default(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a named temporary file would go
    rolled: list[object] = []  # an anonymous (O_TMPFILE) file would not show in a folder listing
    rollover = tempfile.SpooledTemporaryFile.rollover
    monkeypatch.setattr(
        tempfile.SpooledTemporaryFile, "rollover", lambda spooled: (rolled.append(spooled), rollover(spooled))
    )
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200), dtype=np.uint8)
    big = encode(noise, "PNG")
    assert len(big) > 1024 * 1024  # above Starlette's usual in-memory spool size
    response = post(client, ("noise.png", big))
    assert response.status_code == 200, response.text
    assert list(spool.iterdir()) == [] and rolled == []


def test_save_uploads_keeps_a_copy_under_a_safe_name(predictor: Predictor, tmp_path: Path) -> None:
    data = encode(film(), "PNG")
    with TestClient(create_app(predictor, save_uploads_dir=tmp_path / "kept")) as client:
        response = post(client, ("../../etc/evil name.png", data))
    assert response.json()["results"][0]["name"] == "evil name.png"
    (saved,) = (tmp_path / "kept").iterdir()
    assert saved.read_bytes() == data and saved.name.endswith("-evil_name.png")


def test_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    texts = [page.text] + [client.get(f"/static/{name}").text for name in ("app.js", "style.css")]
    for text in texts:
        assert "http://" not in text and "https://" not in text and "//" + "cdn" not in text
    assert 'type="file"' in page.text and "/v1/predict" in texts[1]


def test_openapi_documents_the_upload(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "files" in body["schema"]["properties"]
    assert client.get("/docs").status_code == 200


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


def test_micro_batcher_merges_concurrent_calls_and_keeps_them_apart() -> None:
    sizes: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch.sum(axis=1)

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(run, max_batch=8)
        try:
            calls = [batcher(np.full((1 + i % 2, 3), i, float)) for i in range(6)]
            return list(await asyncio.gather(*calls))
        finally:
            batcher.close()

    results = asyncio.run(main())
    for i, values in enumerate(results):
        np.testing.assert_array_equal(values, np.full(1 + i % 2, 3.0 * i))
    assert sum(sizes) == 9 and max(sizes) > 2 and all(size <= 8 for size in sizes)


def test_micro_batcher_passes_errors_to_every_caller_of_the_batch() -> None:
    def run(batch: np.ndarray) -> np.ndarray:
        raise ValueError("engine failed")

    async def main() -> list[object]:
        batcher = MicroBatcher(run)
        try:
            calls = [batcher(np.zeros((1, 2))) for _ in range(3)]
            return list(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            batcher.close()

    assert all(isinstance(result, ValueError) for result in asyncio.run(main()))


def test_micro_batcher_runs_one_batch_per_worker_at_once() -> None:
    both_running = threading.Barrier(2, timeout=10)  # passes only if two engine calls overlap

    def run(batch: np.ndarray) -> np.ndarray:
        both_running.wait()
        return batch[:, 0]

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(run, workers=2)
        try:
            return list(await asyncio.gather(batcher(np.ones((1, 1))), batcher(np.zeros((1, 1)))))
        finally:
            batcher.close()

    assert [float(values[0]) for values in asyncio.run(main())] == [1.0, 0.0]


# --- hostile clients ---------------------------------------------------------------------------------


def test_security_headers_on_every_response(client: TestClient) -> None:
    paths = ["/", "/static/app.js", "/health", "/v1/model", "/openapi.json", "/docs", "/nope"]
    responses = [client.get(path) for path in paths] + [post(client, ("notes.jpeg", b"text" * 10))]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert (
        client.get("/health").headers["content-security-policy"]
        == "default-src 'none'; frame-ancestors 'none'"
    )


def test_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    assert "script-src 'self';" in page.headers["content-security-policy"]
    scripts = [line.split('src="')[1].split('"')[0] for line in page.text.splitlines() if "<script" in line]
    assert scripts and all("</script>" in line for line in page.text.splitlines() if "<script" in line)
    for source in [*scripts, "/docs/assets/swagger-ui.css"]:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 100, source
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_host_and_origin_are_checked(predictor: Predictor) -> None:
    """A DNS-rebinding page names another Host; a cross-origin form POST carries its Origin."""
    app = create_app(predictor, allowed_hosts=["127.0.0.1", "localhost"])
    data = encode(film(), "PNG")
    files = [("files", ("film.png", data, "image/png"))]
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        assert local.get("/health").status_code == 200
        rebound = local.get("/health", headers={"host": "attacker.example:8000"})
        assert rebound.status_code == 421 and "attacker.example" in rebound.json()["detail"]
        foreign = local.post("/v1/predict", files=files, headers={"origin": "http://attacker.example"})
        assert foreign.status_code == 403 and "cross-origin" in foreign.json()["detail"]
        assert local.post("/v1/predict", files=files, headers={"origin": "null"}).status_code == 403
        same = local.post("/v1/predict", files=files, headers={"origin": "http://127.0.0.1:8000"})
        assert same.status_code == 200, same.text
        assert local.post("/v1/predict", files=files).status_code == 200  # curl and scripts send no Origin


def test_saved_uploads_folder_is_capped(predictor: Predictor, tmp_path: Path) -> None:
    data = encode(film(), "PNG")
    kept = tmp_path / "kept"
    app = create_app(predictor, save_uploads_dir=kept, save_uploads_max_bytes=len(data) * 3 // 2)
    with TestClient(app) as client:
        for name in ("one.png", "two.png"):
            assert post(client, (name, data)).status_code == 200  # predicted either way
    assert [p.name.endswith("-one.png") for p in kept.iterdir()] == [True]


def test_each_request_has_a_pixel_budget(predictor: Predictor) -> None:
    """Small files can decode to many pixels; the budget counts them from the headers, before decoding."""
    app = create_app(predictor, max_request_pixels=20_000)
    data = encode(film(), "PNG")  # 96 x 96 = 9216 pixels
    with TestClient(app) as client:
        assert post(client, ("a.png", data), ("b.png", data)).status_code == 200
        response = post(client, ("a.png", data), ("b.png", data), ("c.png", data))
    assert response.status_code == 413
    assert "over this server's budget of 0.02 million per request" in response.json()["detail"]


def test_dicom_without_preamble_counts_in_the_pixel_budget(predictor: Predictor, tmp_path: Path) -> None:
    pixels = (film() * 16).astype(np.uint16)  # 96 x 96 = 9216 pixels
    bare = write_dicom(tmp_path / "bare", pixels, bits_stored=12, preamble=False).read_bytes()
    assert bare[128:132] != b"DICM"
    with TestClient(create_app(predictor, max_request_pixels=20_000)) as client:
        assert post(client, ("a", bare), ("b", bare)).status_code == 200
        response = post(client, ("a", bare), ("b", bare), ("c", bare))
    assert response.status_code == 413
    assert "over this server's budget of 0.02 million per request" in response.json()["detail"]


def test_cut_jpeg_is_refused_by_the_server_too(client: TestClient) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    data = encode(noise, "JPEG")
    response = post(client, ("cut.jpeg", data[: len(data) // 2] + b"\xff\xd9"))
    assert response.status_code == 400 and "cut.jpeg: image is truncated" in response.json()["detail"]


@pytest.fixture
def live_server(predictor: Predictor) -> Iterator[int]:
    """One upload in flight at most, 1 s body and header timeouts, served on 127.0.0.1 (its port)."""
    with served_on_loopback(
        create_app(predictor, max_in_flight=1, body_timeout=1.0), header_timeout=1.0
    ) as port:
        yield port


def raw_request(port: int, body: bytes, declared: int) -> socket.socket:
    """Send an upload's headers and ``body`` (maybe less than the ``declared`` length) and keep waiting."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=XYZ\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    connection.sendall(head.encode() + body)
    return connection


def read_answer(connection: socket.socket) -> str:
    """One whole HTTP answer (headers and the body their Content-Length announces)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].decode().lower().splitlines():
        if line.startswith("content-length:"):
            return int(line.split(":")[1])
    return 0


_PART = b'--XYZ\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n\r\n'


def whole_upload(port: int) -> socket.socket:
    """A complete upload of one PNG film, sent at once."""
    body = _PART + encode(film(), "PNG") + b"\r\n--XYZ--\r\n"
    return raw_request(port, body, declared=len(body))


def test_slow_bodies_time_out_without_blocking_other_uploads(live_server: int) -> None:
    """Four clients sending their bodies slowly held every slot (503 for all others) until they timed out."""
    slow = [raw_request(live_server, _PART, declared=10_000) for _ in range(4)]  # never send the rest
    try:
        threading.Event().wait(0.3)  # their headers are in
        normal = whole_upload(live_server)
        answer = read_answer(normal)
        normal.close()
        assert answer.startswith("HTTP/1.1 200") and '"probability"' in answer, answer
        for connection in slow:
            answer = read_answer(connection)
            assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer, answer
    finally:
        for connection in slow:
            connection.close()


def test_work_in_flight_is_capped(predictor: Predictor) -> None:
    entered, release = threading.Event(), threading.Event()

    class Held:
        name = "onnx"
        meta = predictor.meta

        def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            entered.set()
            release.wait(30)
            return predictor.engine.run(batch)

    with served_on_loopback(create_app(Predictor(Held()), max_in_flight=1)) as port:
        first = whole_upload(port)
        try:
            assert entered.wait(30), "the first upload never reached the model"
            busy = whole_upload(port)
            answer = read_answer(busy)
            busy.close()
            assert answer.startswith("HTTP/1.1 503") and "retry-after: 1" in answer.lower(), answer
            release.set()
            assert read_answer(first).startswith("HTTP/1.1 200")
        finally:
            release.set()
            first.close()


def test_slow_headers_are_disconnected(live_server: int) -> None:
    """A client sending its request headers a byte at a time was never closed."""
    connection = socket.create_connection(("127.0.0.1", live_server), timeout=0.2)
    head = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    closed = False
    try:
        for byte in head:  # 0.2 s a byte: at most 25 s, far beyond the 1 s header timeout
            try:
                connection.sendall(bytes([byte]))
                closed = connection.recv(1) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
    finally:
        connection.close()
    assert closed, "the server kept waiting for the headers"


def test_serve_port_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "99999"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "pneumoscan: error: --port 99999: a port is a number from 1 to 65535 (0: any free port)"
    ]
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    finally:
        taken.close()
    [line] = capsys.readouterr().err.splitlines()  # and no "serving on" before it
    assert line.startswith(f"pneumoscan: error: cannot listen on 127.0.0.1:{port} (Address already in use)")


def test_the_limits_come_from_the_model_file() -> None:
    """They said "pediatric films from a single hospital" and "simple checks" for the two-site gated model."""
    from pneumoscan.model_file import read_meta
    from pneumoscan.model_source import bundled_model_path

    meta = read_meta(bundled_model_path())
    text = " ".join(model_limits(meta))
    assert "single hospital" not in text and "pediatric" not in text
    sites = meta.metrics["sites"]
    assert f"Trained on {meta.metrics['train_images']} films from {len(sites)} sites" in text
    assert all(site in text for site in sites)
    assert f"above {meta.gate.threshold:.3f} are refused" in text and "simple checks" not in text
    ungated = " ".join(model_limits(meta.model_copy(update={"gate": None, "metrics": {}})))
    assert "no out-of-distribution check" in ungated and "does not record what it was trained on" in ungated
