"""`portraitsr restore|upscale --url`: files sent to a service, against a real local HTTP server.

The server (standard library, in a thread) answers each file's first request with 429 and
``Retry-After: 0``, then 200, and records what it was sent and how many requests overlapped.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from service_helpers import REPO, png_bytes

from training.data.synthetic import synthetic_face


class FakeService:
    def __init__(self, status: int = 200):
        self.status = status
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.refused_once: set[bytes] = set()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with service.lock:
                    service.in_flight += 1
                    service.most_in_flight = max(service.most_in_flight, service.in_flight)
                    first = body not in service.refused_once
                    service.refused_once.add(body)
                    url = urlparse(self.path)
                    service.requests.append({"path": url.path, "query": parse_qs(url.query),
                                             "auth": self.headers.get("Authorization"), "first": first})
                time.sleep(0.05)  # let requests overlap, so the concurrency bound is exercised
                with service.lock:
                    service.in_flight -= 1
                if first:
                    self.answer(429, b'{"error": "queue_full", "detail": "busy"}', {"Retry-After": "0"})
                elif service.status != 200:
                    self.answer(service.status, b'{"error": "too_many_pixels", "detail": "the photo is too large"}', {})
                else:
                    self.answer(200, b"restored:" + body[:8], {"X-Faces": "2", "X-Faces-Detected": "3"})

            def answer(self, status, body, headers):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_service():
    service = FakeService()
    yield service
    service.close()


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portraitsr.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def photos(folder, count: int):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        (folder / f"photo{k}.png").write_bytes(png_bytes(synthetic_face(24 + k)))
    return folder


def test_restore_url_sends_every_file_retries_429_and_bounds_concurrency(fake_service, tmp_path):
    inputs = photos(tmp_path / "in", 6)
    result = run_cli("restore", inputs, "-o", tmp_path / "out", "--url", fake_service.url, "--key", "s3cret",
                     "--concurrency", "2", "--scale", "8", "--format", "webp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("2 of 3 faces restored") == 6
    assert len(fake_service.requests) == 12  # each file: a 429, then the answer
    query = {"scale": ["8"], "format": ["webp"], "model": ["auto"]}  # auto: the service decides
    assert all(r["path"] == "/restore" and r["query"] == query for r in fake_service.requests)
    assert {r["auth"] for r in fake_service.requests} == {"Bearer s3cret"}
    assert fake_service.most_in_flight <= 2
    for k in range(6):
        written = (tmp_path / "out" / f"photo{k}.webp").read_bytes()
        assert written.startswith(b"restored:") and (inputs / f"photo{k}.png").read_bytes().startswith(written[9:])


def test_upscale_url_reports_the_service_error_and_fails(tmp_path):
    service = FakeService(status=413)
    try:
        result = run_cli("upscale", photos(tmp_path / "in", 1), "-o", tmp_path / "out", "--url", service.url,
                         "--max-retries", "3", "--model", "real")
    finally:
        service.close()
    assert result.returncode == 1
    assert "413 too_many_pixels: the photo is too large" in result.stderr
    assert [r["path"] for r in service.requests] == ["/upscale", "/upscale"] and service.requests[0]["auth"] is None
    assert service.requests[0]["query"]["model"] == ["real"]


def test_429_forever_gives_up_after_the_retries(tmp_path):
    service = FakeService()
    service.refused_once = _AlwaysNew()
    try:
        result = run_cli("restore", photos(tmp_path / "in", 1), "-o", tmp_path / "out", "--url", service.url,
                         "--max-retries", "2")
    finally:
        service.close()
    assert result.returncode == 1 and "429 queue_full" in result.stderr
    assert len(service.requests) == 3


def test_unreachable_service(tmp_path):
    result = run_cli("restore", photos(tmp_path / "in", 1), "-o", tmp_path / "out", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach" in result.stderr


class _AlwaysNew(set):
    """A 'seen' set that never remembers: every request is a first one, so every answer is 429."""

    def __contains__(self, item):
        return False
