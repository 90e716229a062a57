"""Faults: a worker killed or stopped while holding jobs, Redis restarting, a poison job."""

from __future__ import annotations

import io
import signal
import time
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
from service.queue.protocol import Job, Reply

STREAM, GROUP = "portraitsr:jobs", "portraitsr-workers"
# A worker that waits long to fill its batch: it holds the jobs it has read for that long.
SLOW_FILL = {"max_batch_size": 16, "max_batch_wait_ms": 4000}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"))
    cluster.start_redis()
    cluster.url = cluster.start_api()
    cluster.runners = load_runners(load_manifest(cluster.manifest), REFERENCE.with_threads(1))
    yield cluster
    cluster.close()


def post_all(url: str, payloads: list[bytes]) -> tuple[ThreadPoolExecutor, list]:
    pool = ThreadPoolExecutor(len(payloads))
    futures = [pool.submit(httpx.post, f"{url}/upscale", params={"scale": 8}, content=p, timeout=60) for p in payloads]
    return pool, futures


def pending_of(cluster: Cluster, count: int) -> bool:
    return cluster.redis().xpending(STREAM, GROUP)["pending"] >= count


def assert_correct(cluster: Cluster, payloads: list[bytes], responses: list[httpx.Response]) -> None:
    for payload, response in zip(payloads, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = np.asarray(upscale(cluster.runners[8, "clean"], decode_image(payload)))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)


def test_sigterm_mid_batch_finishes_and_acknowledges_the_batch(cluster):
    worker = cluster.start_worker("worker-sigterm", **SLOW_FILL)
    payloads = [png_bytes(face_like(16, 16, seed=s)) for s in range(3)]
    pool, futures = post_all(cluster.url, payloads)
    wait_until(lambda: pending_of(cluster, 3), 10, message="the worker to hold 3 jobs")
    worker.send_signal(signal.SIGTERM)  # while it is still filling its batch
    assert worker.wait(20) == 0
    assert_correct(cluster, payloads, [f.result() for f in futures])
    pool.shutdown()
    assert cluster.redis().xpending(STREAM, GROUP)["pending"] == 0
    log = worker.log_path.read_text()
    assert "SIGTERM received" in log and "batch of 3 (x8) done" in log and "acknowledged" in log


def test_worker_killed_holding_jobs_loses_nothing(cluster):
    doomed = cluster.start_worker("worker-doomed", **SLOW_FILL)
    payloads = [png_bytes(face_like(16, 16, seed=10 + s)) for s in range(4)]
    pool, futures = post_all(cluster.url, payloads)
    wait_until(lambda: pending_of(cluster, 4), 10, message="the doomed worker to hold 4 jobs")
    consumers = cluster.redis().xpending(STREAM, GROUP)["consumers"]
    assert len(consumers) == 1 and consumers[0]["pending"] == 4
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    rescuer = cluster.start_worker("worker-rescuer")
    assert_correct(cluster, payloads, [f.result() for f in futures])
    pool.shutdown()
    metrics = httpx.get(f"{rescuer.metrics_url}/metrics").text
    assert metric_value(metrics, "portraitsr_worker_redeliveries_total") == 4
    cluster.rescuer = rescuer


def test_a_job_that_keeps_failing_goes_to_the_dead_letter_stream(cluster):
    # Simulate a job whose every delivery died with its worker: delivered max_deliveries (3) times.
    redis = cluster.redis()
    pixels = np.zeros((16, 16, 3), dtype=np.float32).tobytes()
    job = Job("poison", "portraitsr:replies:test-poison", 8, 16, 16, time.time() + 30, time.time(), pixels)
    redis.xgroup_createconsumer(STREAM, GROUP, "ghost")
    transaction = redis.pipeline(transaction=True)  # so that the live worker cannot read it first
    transaction.xadd(STREAM, job.to_fields())
    transaction.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=1)
    entry_id = transaction.execute()[0]
    for _ in range(2):
        redis.xclaim(STREAM, GROUP, "ghost", 0, [entry_id])
    wait_until(lambda: redis.xlen("portraitsr:replies:test-poison") == 1, 15, message="the dead-letter reply")
    (_, fields), = redis.xrange("portraitsr:replies:test-poison")
    reply = Reply.from_fields(fields)
    assert reply.job_id == "poison" and reply.status == "dead_lettered"
    dead = redis.xrange("portraitsr:dead-letter")
    assert len(dead) == 1 and dead[0][1][b"id"] == b"poison" and dead[0][1][b"deliveries"] == b"3"
    assert redis.xpending(STREAM, GROUP)["pending"] == 0
    redis.xgroup_delconsumer(STREAM, GROUP, "ghost")


def test_redis_restart_readiness_goes_false_then_true_and_work_resumes(cluster):
    worker = getattr(cluster, "rescuer", None) or cluster.start_worker("worker-restart")
    api_process = cluster.processes[0]
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 20, message="ready before")
    cluster.stop_redis()
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz", timeout=5).status_code == 503, 20, message="not ready")
    assert httpx.get(f"{cluster.url}/livez").status_code == 200
    down = httpx.post(f"{cluster.url}/upscale", content=png_bytes(face_like(16, 16)), timeout=10)
    assert down.status_code == 503 and down.json()["error"] == "queue_unavailable"
    cluster.start_redis()
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="ready again")
    assert api_process.poll() is None and worker.poll() is None  # nothing restarted
    payloads = [png_bytes(face_like(16, 16, seed=20 + s)) for s in range(3)]
    pool, futures = post_all(cluster.url, payloads)
    assert_correct(cluster, payloads, [f.result() for f in futures])
    pool.shutdown()
