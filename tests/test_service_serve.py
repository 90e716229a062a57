"""`portraitsr serve` as a user runs it, and the service on the real release when it exists."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import (
    REPO,
    Cluster,
    build_fixture_release,
    face_like,
    free_port,
    free_port_block,
    png_bytes,
    wait_until,
)

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE
from service.core.images import decode_image
from service.core.inference import load_runners, upscale

RELEASE_MANIFEST = REPO / "model" / "release" / "manifest.json"


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_serve_starts_everything_and_ctrl_c_stops_it_all(tmp_path):
    manifest = build_fixture_release(tmp_path / "release")
    api_port, worker_port = free_port(), free_port()
    env = {"PORTRAITSR_MANIFEST_PATH": str(manifest), "PORTRAITSR_WORKER_METRICS_PORT": str(worker_port),
           "PORTRAITSR_REDIS_DIR": str(tmp_path / "redis")}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "portraitsr", "serve", "--port", str(api_port)],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PORTRAITSR_")}, **env},
            stdout=log, stderr=log, cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{api_port}"
            wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, message="serve ready")
            response = httpx.post(f"{url}/upscale", params={"scale": 4}, content=png_bytes(face_like(32, 32)), timeout=30)
            assert response.status_code == 200
            assert Image.open(io.BytesIO(response.content)).size == (128, 128)
            wait_until(lambda: "is serving on" in log_path.read_text(), 10, message="the serving message")
            redis_port = int(re.search(r"redis-server on 127\.0\.0\.1:(\d+)", log_path.read_text()).group(1))
            assert port_open(redis_port) and port_open(worker_port)
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert not port_open(api_port) and not port_open(worker_port) and not port_open(redis_port)
    text = log_path.read_text()
    assert "is serving on" in text and "SIGINT received: shutting down" in text and "stopped" in text


def test_serve_with_a_redis_url_uses_that_redis(tmp_path):
    cluster = Cluster(tmp_path, build_fixture_release(tmp_path / "release"))
    cluster.start_redis()
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITSR_")}
    env.update(PORTRAITSR_MANIFEST_PATH=str(cluster.manifest), PORTRAITSR_WORKER_METRICS_PORT=str(free_port()))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "portraitsr", "serve", "--port", str(api_port), "--redis-url", cluster.settings["redis_url"]],
            env=env, stdout=log, stderr=log, cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{api_port}"
            wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, message="serve ready")
            response = httpx.post(f"{url}/upscale", content=png_bytes(face_like(16, 16)), timeout=30)
            assert response.status_code == 200
            assert cluster.redis().exists("portraitsr:jobs")  # the queue lives in the given Redis
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
            cluster.close()
    assert "private redis-server" not in log_path.read_text()


@pytest.mark.skipif(not RELEASE_MANIFEST.is_file(), reason="no shipped release yet (model/release/manifest.json)")
def test_service_serves_the_shipped_release(tmp_path):
    specs = load_manifest(RELEASE_MANIFEST)
    runners = load_runners(specs, REFERENCE.with_threads(1))
    cluster = Cluster(tmp_path, RELEASE_MANIFEST, job_deadline_s=120, claim_idle_ms=30000)
    try:
        cluster.start_redis()
        cluster.start_worker()
        url = cluster.start_api()
        for spec in specs:
            side = 128 // spec.scale
            data = png_bytes(face_like(side, side, seed=spec.scale))
            params = {"scale": spec.scale, "model": str(spec.variant)}
            response = httpx.post(f"{url}/upscale", params=params, content=data, timeout=120)
            assert response.status_code == 200, response.text
            assert response.headers["x-model"] == spec.name
            output = np.asarray(Image.open(io.BytesIO(response.content)))
            assert output.shape == (128, 128, 3)
            np.testing.assert_array_equal(output, np.asarray(upscale(runners[spec.scale, spec.variant], decode_image(data))))
    finally:
        cluster.close()


def test_private_redis_needs_its_password_and_a_kill_9_under_load_loses_no_job(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    manifest = build_fixture_release(tmp_path / "release")
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITSR_")}
    env.update(PORTRAITSR_MANIFEST_PATH=str(manifest), PORTRAITSR_REDIS_DIR=str(tmp_path / "redis"),
               PORTRAITSR_WORKER_METRICS_PORT=str(free_port_block(2, avoid={api_port})))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "portraitsr", "serve", "--port", str(api_port), "--workers", "2"],
            env=env, stdout=log, stderr=log, cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{api_port}"
            wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 90,
                       message=lambda: f"serve ready (its log ends: {log_path.read_text()[-3000:]})")
            found = re.search(r"redis-server on 127\.0\.0\.1:(\d+) \(pid (\d+)", log_path.read_text())
            redis_port, redis_pid = int(found.group(1)), int(found.group(2))
            with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as connection:
                connection.sendall(b"PING\r\n")
                assert connection.recv(64).startswith(b"-NOAUTH")
            payloads = [png_bytes(face_like(16, 16, seed=s)) for s in range(60)]
            with ThreadPoolExecutor(30) as pool:
                futures = [pool.submit(httpx.post, f"{url}/upscale", content=p, timeout=60) for p in payloads]
                wait_until(lambda: sum(f.done() for f in futures) >= 5, 60, message="some answers")
                os.kill(redis_pid, signal.SIGKILL)  # mid-load
                statuses = [f.result().status_code for f in futures]
            assert statuses == [200] * 60, log_path.read_text()[-3000:]
            wait_until(lambda: "private redis-server restarted" in log_path.read_text(), 10,
                       message=lambda: f"the restart (the log ends: {log_path.read_text()[-3000:]})")
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    text = log_path.read_text()
    assert "redis://:" not in text and "requirepass" not in text  # the password is never logged
