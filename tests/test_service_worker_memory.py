"""Worker memory stays bounded under heavy inputs: a batch's pixels are capped (a heavy input runs
alone) and ONNX Runtime's CPU arena is off, so memory returns after the run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from service_helpers import Cluster, build_fixture_release, face_like, png_bytes, wait_until

from benchmarks.serve_stack import rss_mib
from service.queue.worker import split_size


def test_split_size_keeps_batches_within_the_pixel_budget():
    budget = 8 * 128 * 128
    assert split_size(128 * 128, 8, budget) == 8  # faces: full batches
    assert split_size(256 * 256, 8, budget) == 2
    assert split_size(512 * 512, 8, budget) == 1  # heavy: alone
    assert split_size(2048 * 2048, 8, budget) == 1  # never zero


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("worker-memory")
    # Two 16-channel convolutions at the output size: ~16 MiB per activation of a 512×512 output.
    cluster = Cluster(workdir, build_fixture_release(workdir / "release", heavy_convs=2), job_deadline_s=120,
                      max_batch_wait_ms=200, claim_idle_ms=60000)
    cluster.start_redis()
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api(admission_fraction=1.0)
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


def test_heavy_inputs_run_alone_and_the_worker_gives_the_memory_back(cluster):
    post = lambda data: httpx.post(f"{cluster.url}/upscale", params={"scale": 4}, content=data, timeout=120)  # noqa: E731
    assert post(png_bytes(face_like(32, 32))).status_code == 200  # a usual face first: the baseline
    baseline = rss_mib(cluster.worker.pid)
    heavy = [png_bytes(face_like(128, 128, seed=s)) for s in range(6)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(post, heavy))
    after = rss_mib(cluster.worker.pid)
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.headers["x-batch-size"] for r in responses} == {"1"}  # 512×512 outputs: one per model run
    assert after - baseline < 128, (baseline, after)
