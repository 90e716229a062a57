"""The service on its default runtime: /readyz, the start log and the metrics name each model's
runtime and precision, and what it serves matches the reference runtime's pixels to within bf16."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import Cluster, build_fixture_release, face_like, metric_value, png_bytes, wait_until

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE, RuntimeRequest, choose_runtime
from service.core.images import decode_image
from service.core.inference import load_runners, upscale
from training.metrics import psnr_y


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("service-runtimes")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"), runtime="auto",
                      openvino_cache_dir=workdir / "openvino-cache")
    cluster.start_redis()
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api()
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


def test_readyz_log_and_metrics_name_the_runtime_and_precision(cluster):
    expected = choose_runtime(RuntimeRequest())  # what auto picks on this machine
    api_models = httpx.get(f"{cluster.url}/readyz").json()["workers"][0]["models"]
    worker_models = httpx.get(f"{cluster.worker.metrics_url}/readyz").json()["models"]
    for models in (api_models, worker_models):
        assert {(m["runtime"], m["precision"]) for m in models} == {(expected.runtime, expected.precision)}
        assert sorted(m["scale"] for m in models) == [4, 8]
    metrics = httpx.get(f"{cluster.worker.metrics_url}/metrics").text
    labels = {"runtime": expected.runtime, "precision": expected.precision}
    assert metric_value(metrics, "portraitsr_worker_info", labels) == 2  # one per model
    log = cluster.worker.log_path.read_text()
    assert f"runs on {expected.runtime} {expected.device} {expected.precision}: {expected.reason}" in log
    assert "models loaded in" in log


def test_served_pixels_match_the_reference_runtime(cluster):
    runner = load_runners(load_manifest(cluster.manifest), REFERENCE.with_threads(1))[8, "clean"]
    data = png_bytes(face_like(16, 16, seed=11))
    response = httpx.post(f"{cluster.url}/upscale", params={"scale": 8}, content=data, timeout=30)
    assert response.status_code == 200
    served = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    reference = np.asarray(upscale(runner, decode_image(data)).convert("RGB"))
    # bf16 moves pixels by a level or two, no more (training/runtime_parity.py holds real models).
    assert psnr_y(served, reference) >= 45
