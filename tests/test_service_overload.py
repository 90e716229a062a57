"""Overload against real processes: bursts get only 200 or 429 and readiness holds; heavy inputs
are admitted by their model time, so what is accepted finishes and the rest gets 429 at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from service_helpers import Cluster, build_fixture_release, face_like, metric_value, png_bytes, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("overload")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"), max_batch_wait_ms=5)
    cluster.start_redis()
    cluster.worker = cluster.start_worker()
    cluster.burst_url = cluster.start_api("api-burst", queue_max_length=64)
    # 128×128 inputs at ×4 take the fixture model ~0.2 s each here: 40 of them are far more than a
    # 5 s deadline allows, which admission by count (queue_max_length 256) would all accept.
    cluster.heavy_url = cluster.start_api("api-heavy", job_deadline_s=5, admission_fraction=0.4)
    for url in (cluster.burst_url, cluster.heavy_url):
        wait_until(lambda url=url: httpx.get(f"{url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


async def burst(url: str, data: bytes, clients: int, scale: int) -> tuple[list[httpx.Response], list[int]]:
    """``clients`` simultaneous uploads while /readyz is polled; the answers and the readiness statuses."""
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        done = asyncio.Event()
        readiness: list[int] = []

        async def poll_readiness():
            while not done.is_set():
                readiness.append((await client.get(f"{url}/readyz")).status_code)
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll_readiness())
        uploads = [client.post(f"{url}/upscale", params={"scale": scale}, content=data) for _ in range(clients)]
        responses = await asyncio.gather(*uploads)
        done.set()
        await poller
    return responses, readiness


def test_a_burst_of_250_uploads_gets_only_200_or_429_and_readiness_holds(cluster):
    responses, readiness = asyncio.run(burst(cluster.burst_url, png_bytes(face_like(16, 16)), 250, 8))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, {s: statuses.count(s) for s in set(statuses)}
    assert 200 in statuses and 429 in statuses  # the queue of 64 filled: some were turned away
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
    assert readiness and set(readiness) == {200}


def test_heavy_inputs_get_429_at_once_rather_than_504(cluster):
    heavy = png_bytes(face_like(128, 128, seed=5))
    responses, _ = asyncio.run(burst(cluster.heavy_url, heavy, 40, 4))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, {s: statuses.count(s) for s in set(statuses)}
    assert 200 in statuses and 429 in statuses
    rejected = [r for r in responses if r.status_code == 429]
    assert all(r.json()["error"] == "queue_full" and "deadline" in r.json()["detail"] for r in rejected)
    metrics = httpx.get(f"{cluster.heavy_url}/metrics").text
    assert metric_value(metrics, "portraitsr_requests_total", {"outcome": "timeout_504"}) == 0
