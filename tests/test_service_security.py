"""The service under a Redis ACL user limited to what it uses, with its password in a file: a real
redis-server refuses everyone else and everything else, and the service still works end to end."""

from __future__ import annotations

import hashlib
import subprocess

import httpx
import pytest
import redis
from service_helpers import (
    Cluster,
    build_fixture_release,
    face_like,
    png_bytes,
    redis_server_executable,
    wait_until,
)

from service.http.auth import hash_key
from service.queue.protocol import acl_rule

PASSWORD = "a-long-random-password-for-the-test"
API_KEY = "an-api-key-for-the-test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("security")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"))
    acl = workdir / "users.acl"
    acl.write_text("user default off\n" + acl_rule("portraitsr", hashlib.sha256(PASSWORD.encode()).hexdigest()) + "\n")
    secret = workdir / "redis-password"
    secret.write_text(PASSWORD + "\n")
    cluster.redis_process = subprocess.Popen(
        [redis_server_executable(), "--bind", "127.0.0.1", "--port", str(cluster.redis_port), "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--aclfile", str(acl)], stdout=subprocess.DEVNULL,
    )
    cluster.service_redis = lambda: redis.Redis(port=cluster.redis_port, username="portraitsr", password=PASSWORD)
    wait_until(lambda: cluster.service_redis().ping(), 10, message="redis-server with ACL")
    cluster.settings.update(redis_url=f"redis://portraitsr@127.0.0.1:{cluster.redis_port}/0", redis_password_file=str(secret))
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api()
    keys = workdir / "api-keys"
    keys.write_text(hash_key(API_KEY) + "\n")
    cluster.keyed_url = cluster.start_api("api-keyed", api_keys_file=str(keys))
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


def test_the_service_works_under_its_acl_user(cluster):
    response = httpx.post(f"{cluster.url}/upscale", params={"scale": 8}, content=png_bytes(face_like(16, 16)), timeout=30)
    assert response.status_code == 200, response.text
    assert "NOPERM" not in (cluster.workdir / "worker.log").read_text() + (cluster.workdir / "api.log").read_text()


def test_redis_refuses_strangers_and_commands_the_service_does_not_use(cluster):
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=cluster.redis_port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=cluster.redis_port, username="portraitsr", password="wrong").ping()
    service = cluster.service_redis()
    for forbidden in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("GET", "other-app:secret")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            service.execute_command(*forbidden)


def test_api_keys_gate_the_image_endpoint_and_metrics(cluster):
    face = png_bytes(face_like(16, 16))
    wait_until(lambda: httpx.get(f"{cluster.keyed_url}/readyz").status_code == 200, 30, message="keyed API ready")

    def upscale(headers):
        return httpx.post(f"{cluster.keyed_url}/upscale", content=face, headers=headers, timeout=30)

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = upscale(headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert httpx.get(f"{cluster.keyed_url}/metrics", headers=headers).status_code == 401
    good = {"Authorization": f"Bearer {API_KEY}"}
    assert upscale(good).status_code == 200
    assert httpx.get(f"{cluster.keyed_url}/metrics", headers=good).status_code == 200
    anonymous = httpx.get(f"{cluster.keyed_url}/readyz").json()
    assert anonymous["ready"] and anonymous["workers"] == 1  # a count, no ids or addresses
    assert httpx.get(f"{cluster.keyed_url}/readyz", headers=good).json()["workers"][0]["worker"]


def test_page_and_docs_reference_no_other_host_and_send_the_security_headers(cluster):
    import re

    for path in ("/", "/docs"):
        response = httpx.get(f"{cluster.url}{path}")
        assert response.status_code == 200
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', response.text), path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert httpx.get(f"{cluster.url}/redoc").status_code == 404
