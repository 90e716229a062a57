"""Redis lost under load: jobs it held are re-submitted by the API (nothing accepted is lost), and
requests waiting on a Redis that stays away get 503 instead of hanging to their deadline."""

from __future__ import annotations

import io
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import Cluster, build_fixture_release, face_like, metric_value, png_bytes, wait_until

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE
from service.core.images import decode_image
from service.core.inference import load_runners, upscale

STREAM = "portraitsr:jobs"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("redis-loss")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"), job_deadline_s=30)
    cluster.start_redis()  # no persistence: a kill -9 loses everything it held
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api(redis_outage_grace_s=3)
    cluster.runners = load_runners(load_manifest(cluster.manifest), REFERENCE.with_threads(1))
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    os.kill(cluster.worker.pid, signal.SIGCONT)
    cluster.close()


def post_many(url: str, payloads: list[bytes]):
    pool = ThreadPoolExecutor(len(payloads))
    futures = [pool.submit(httpx.post, f"{url}/upscale", params={"scale": 8}, content=p, timeout=60) for p in payloads]
    return pool, futures


def test_kill_9_of_redis_holding_30_accepted_jobs_loses_none(cluster):
    payloads = [png_bytes(face_like(16, 16, seed=100 + s)) for s in range(30)]
    os.kill(cluster.worker.pid, signal.SIGSTOP)  # the jobs stay in Redis until it dies
    try:
        pool, futures = post_many(cluster.url, payloads)
        wait_until(lambda: cluster.redis().xlen(STREAM) == 30, 20, message="30 accepted jobs in Redis")
        # A worker stopped inside a blocking XREADGROUP can hold jobs Redis already delivered to its
        # socket: after SIGCONT it may answer them before the API notices the restart.
        delivered = sum(group["pending"] for group in cluster.redis().xinfo_groups(STREAM))
        cluster.kill_redis()
        cluster.start_redis()
        assert cluster.redis().xlen(STREAM) in (0, 30)  # nothing survived, or the API already re-submitted
    finally:
        os.kill(cluster.worker.pid, signal.SIGCONT)
    responses = [future.result() for future in futures]
    pool.shutdown()
    for payload, response in zip(payloads, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = np.asarray(upscale(cluster.runners[8, "clean"], decode_image(payload)))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)
    metrics = httpx.get(f"{cluster.url}/metrics").text
    assert 30 - delivered <= metric_value(metrics, "portraitsr_resubmitted_jobs_total") <= 30


def test_requests_waiting_through_an_outage_shorter_than_the_grace_are_answered(cluster):
    """Redis away for a while (not just a restart): the API sees it down, then back, then re-submits."""
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="ready")
    payloads = [png_bytes(face_like(16, 16, seed=200 + s)) for s in range(8)]
    os.kill(cluster.worker.pid, signal.SIGSTOP)
    try:
        pool, futures = post_many(cluster.url, payloads)
        wait_until(lambda: cluster.redis().xlen(STREAM) == 8, 20, message="8 accepted jobs in Redis")
        cluster.stop_redis()
        wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 503, 20, message="the API sees Redis down")
        cluster.start_redis()
    finally:
        os.kill(cluster.worker.pid, signal.SIGCONT)
    responses = [future.result() for future in futures]
    pool.shutdown()
    assert [r.status_code for r in responses] == [200] * 8, [r.text[:100] for r in responses]


def test_requests_waiting_on_a_redis_that_stays_down_get_503_not_a_hang(cluster):
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="ready again")
    os.kill(cluster.worker.pid, signal.SIGSTOP)
    try:
        pool, futures = post_many(cluster.url, [png_bytes(face_like(16, 16, seed=s)) for s in range(5)])
        wait_until(lambda: cluster.redis().xlen(STREAM) == 5, 20, message="5 accepted jobs in Redis")
        cluster.stop_redis()
        responses = [future.result() for future in futures]  # the deadline is 30 s; the grace 3 s
        pool.shutdown()
    finally:
        os.kill(cluster.worker.pid, signal.SIGCONT)
        cluster.start_redis()
    assert [r.status_code for r in responses] == [503] * 5
    assert all(r.json()["error"] == "queue_unavailable" and "has been unreachable for" in r.json()["detail"] for r in responses)
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="ready after the outage")
    assert httpx.post(f"{cluster.url}/upscale", content=png_bytes(face_like(16, 16)), timeout=30).status_code == 200
