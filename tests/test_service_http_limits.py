"""The API server's own limits, against a real `portraitsr api` process: slow or huge request
heads, stalled bodies and too many connections are cut off instead of holding memory."""

from __future__ import annotations

import socket

import httpx
import pytest
from service_helpers import Cluster, build_fixture_release, face_like, png_bytes


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("http-limits")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"))
    cluster.start_redis()
    url = cluster.start_api(http_header_timeout_s=2, http_body_timeout_s=2, http_max_connections=20)
    cluster.port = int(url.rsplit(":", 1)[1])
    cluster.url = url
    yield cluster
    cluster.close()


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout (a failure) if it never does."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_half_sent_head_gets_408_and_is_closed(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as connection:
        connection.sendall(b"POST /upscale HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n")
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408") and b'"header_timeout"' in answer


def test_an_idle_connection_is_closed(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as connection:
        assert read_until_closed(connection) == b""


def test_a_100_kib_header_gets_431(api):
    response = httpx.get(f"{api.url}/livez", headers={"X-Padding": "a" * 100 * 1024})
    assert response.status_code == 431 and response.json()["error"] == "headers_too_large"
    assert httpx.get(f"{api.url}/livez").status_code == 200


def test_a_20_kib_url_gets_431_in_the_error_shape(api):
    response = httpx.get(f"{api.url}/livez", params={"q": "a" * 20 * 1024})
    assert response.status_code == 431 and set(response.json()) == {"error", "detail", "request_id"}


def test_a_stalled_body_closes_the_connection_without_a_traceback(api):
    head = b"POST /upscale HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as connection:
        connection.sendall(head + png_bytes(face_like(16, 16))[:10])
        read_until_closed(connection)
    assert "Traceback" not in (api.workdir / "api.log").read_text()


def test_connections_past_the_limit_get_429(api):
    idle = [socket.create_connection(("127.0.0.1", api.port), timeout=30) for _ in range(20)]
    try:
        response = httpx.get(f"{api.url}/livez")
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
    finally:
        for connection in idle:
            connection.close()
