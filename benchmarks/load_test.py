"""Load test of ``pneumoscan serve``: concurrent clients against the real server, per engine.

For each engine (``torch`` with the model file, ``onnx`` with an export of it made by
``pneumoscan export MODEL --format onnx OUT``) it starts the server on 127.0.0.1 at a free port,
lets ``--clients`` threads post the same chest film to ``/v1/predict`` for ``--seconds``, stops the
server and prints one table row: requests, failures, throughput and latency percentiles.  It
exits with status 1 if any request failed or a server did not start.

    python benchmarks/load_test.py [--model MODEL] [--engines torch,onnx] [--clients 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from pneumoscan.cli import COMMANDS
from pneumoscan.model_source import bundled_model_path
from pneumoscan.synthetic import synthetic_film

STARTUP_SECONDS = 120.0
REQUEST_TIMEOUT = 60.0


@dataclass
class Tally:
    """Latencies of the successful requests and the failures, shared by the client threads."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.latencies.append(seconds)
            else:
                self.failures.append(failure)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model file (.safetensors; default: the bundled model)")
    parser.add_argument("--engines", default="torch,onnx", help="comma-separated engines (default: both)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per engine (default: 20)")
    parser.add_argument("--image", type=Path, help="image to post (default: a synthetic 1024-px JPEG film)")
    parser.add_argument("--heatmap", action="store_true", help="ask for heat maps (torch engine only)")
    args = parser.parse_args()
    if args.model is None:
        if not bundled_model_path().exists():
            parser.error("this install has no bundled model; pass --model MODEL")
        args.model = bundled_model_path()
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def onnx_unavailable() -> str | None:
    """Why the ONNX engine cannot be measured here, or None if it can."""
    if "export" not in COMMANDS or importlib.util.find_spec("pneumoscan.engines.onnx_engine") is None:
        return "this pneumoscan has no ONNX export yet"
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'pneumoscan[onnx,export]')"
    return None


def export_onnx(model: Path, out: Path) -> None:
    command = [sys.executable, "-m", "pneumoscan", "export", str(model), "--format", "onnx", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"export failed: {done.stderr.strip() or done.stdout.strip()}")


class Server:
    """``pneumoscan serve`` in a subprocess on 127.0.0.1; its output goes to a log file."""

    def __init__(self, model: Path, engine: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        command = [sys.executable, "-m", "pneumoscan", "serve", "--model", str(model), "--engine", engine]
        command += ["--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1]]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not answer within {STARTUP_SECONDS:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def client(url: str, image: tuple[str, bytes], params: dict[str, str], deadline: float, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                response = http.post("/v1/predict", params=params, files={"files": image})
                failure = None if response.status_code == 200 else f"{response.status_code}: {response.text}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            tally.add(time.perf_counter() - start, failure)


def measure(
    url: str, image: tuple[str, bytes], params: dict[str, str], clients: int, seconds: float
) -> tuple[Tally, float]:
    """Run ``clients`` threads for ``seconds``; returns the tally and the elapsed wall time."""
    for _ in range(3):  # warm-up: the first calls allocate memory and pick kernels
        warm = httpx.post(url + "/v1/predict", params=params, files={"files": image}, timeout=REQUEST_TIMEOUT)
        warm.raise_for_status()
    tally = Tally()
    start = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(url, image, params, start + seconds, tally))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.monotonic() - start


def row(engine: str, clients: int, tally: Tally, elapsed: float) -> str:
    done = len(tally.latencies) + len(tally.failures)
    p50, p95, p99 = (
        np.percentile(np.array(tally.latencies) * 1000, [50, 95, 99]) if tally.latencies else [np.nan] * 3
    )
    return (
        f"{engine:<6} {clients:>7} {done:>8} {len(tally.failures):>6} {done / elapsed:>8.2f} "
        f"{p50:>8.0f} {p95:>8.0f} {p99:>8.0f}"
    )


def load_image(path: Path | None) -> tuple[str, bytes]:
    """The file to post: ``path``, or a synthetic 1024-px film as JPEG."""
    if path is not None:
        return path.name, path.read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(synthetic_film(np.random.default_rng(0), True, size=1024)).save(buffer, format="JPEG")
    return "synthetic-film.jpeg", buffer.getvalue()


def main() -> int:
    args = parse_args()
    image = load_image(args.image)
    params = {"heatmap": "true"} if args.heatmap else {}
    header = f"{'engine':<6} {'clients':>7} {'requests':>8} {'failed':>6} {'req/s':>8} "
    header += f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    rows, ok = [header], True
    with tempfile.TemporaryDirectory(prefix="pneumoscan-load-") as tmp:
        for engine in [name.strip() for name in args.engines.split(",") if name.strip()]:
            model = args.model
            if engine == "onnx":
                reason = onnx_unavailable()
                if reason:
                    print(f"skipping the onnx engine: {reason}", file=sys.stderr)
                    continue
                model = Path(tmp) / "model.onnx"
                export_onnx(args.model, model)
            server = Server(model, engine, Path(tmp) / f"serve-{engine}.log")
            try:
                server.wait_ready()
                print(f"{engine}: {args.clients} clients for {args.seconds:g} s ...", file=sys.stderr)
                tally, elapsed = measure(server.url, image, params, args.clients, args.seconds)
            except (RuntimeError, httpx.HTTPError) as exc:
                print(f"{engine}: {exc}", file=sys.stderr)
                ok = False
                continue
            finally:
                server.stop()
            rows.append(row(engine, args.clients, tally, elapsed))
            for failure in sorted(set(tally.failures))[:5]:
                print(f"{engine}: failed request: {failure[:300]}", file=sys.stderr)
            ok = ok and not tally.failures
    print(f"image: {image[0]} ({len(image[1]) / 1024:.0f} KiB), {os.cpu_count()} CPUs")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
