"""The service end to end: real redis-server, worker and API processes, a fixture ONNX model."""

from __future__ import annotations

import io
import os
import signal
import struct
import time
import zlib
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
from service.queue.protocol import Job


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("service")
    manifest = build_fixture_release(workdir / "release")
    cluster = Cluster(workdir, manifest, max_batch_wait_ms=50)
    cluster.start_redis()
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api()
    # A second API on the same queue with a tiny queue and a short deadline, for 429 and 504.
    cluster.tight_url = cluster.start_api("api-tight", queue_max_length=2, job_deadline_s=2.0)
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def runners(cluster):
    return load_runners(load_manifest(cluster.manifest), REFERENCE.with_threads(1))


def post(url: str, data: bytes, **params) -> httpx.Response:
    return httpx.post(f"{url}/upscale", params=params, content=data, timeout=30)


def expected_output(runners, data: bytes, scale: int) -> np.ndarray:
    return np.asarray(upscale(runners[scale, "clean"], decode_image(data)))


@pytest.mark.parametrize(("side", "scale"), [(16, 8), (32, 4)])
def test_upscale_png_matches_the_model_run_directly(cluster, runners, side, scale):
    data = png_bytes(face_like(side, side, seed=side))
    response = httpx.post(f"{cluster.url}/upscale", params={"scale": scale}, files={"image": ("face.png", data, "image/png")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-request-id"]
    assert "inference;dur=" in response.headers["server-timing"]
    assert float(response.headers["x-queue-wait-ms"]) >= 0 and float(response.headers["x-inference-ms"]) > 0
    output = Image.open(io.BytesIO(response.content))
    assert output.size == (128, 128) and output.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(output), expected_output(runners, data, scale))


@pytest.mark.parametrize(("output_format", "mime", "pil_format"), [("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")])
def test_jpeg_and_webp_output(cluster, runners, output_format, mime, pil_format):
    data = png_bytes(face_like(16, 16, seed=3))
    response = post(cluster.url, data, scale=8, format=output_format)  # raw body this time
    assert response.status_code == 200 and response.headers["content-type"] == mime
    output = Image.open(io.BytesIO(response.content))
    assert output.format == pil_format and output.size == (128, 128)
    difference = np.abs(np.asarray(output.convert("RGB"), dtype=float) - expected_output(runners, data, 8))
    assert difference.mean() < 3  # lossy codecs, same picture


def test_default_scale_is_8_and_alpha_is_kept(cluster):
    rgba = face_like(16, 16, channels=4)
    rgba[:, :, 3] = 255
    rgba[:4, :4, 3] = 0
    response = post(cluster.url, png_bytes(rgba))
    assert response.status_code == 200
    output = Image.open(io.BytesIO(response.content))
    assert output.size == (128, 128) and output.mode == "RGBA"
    assert np.asarray(output.getchannel("A"))[:24, :24].max() == 0


def fake_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **save_args)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.fromarray(face_like(16, 16, seed=s)).convert("P") for s in range(2)]
    return encoded(frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=50)


BAD_AND_ODD_INPUTS = {
    # name: (body, query, expected status, expected error code or output size)
    "empty body": (b"", {}, 400, "empty_body"),
    "text": (b"just some text", {}, 415, "unsupported_format"),
    "truncated png": (png_bytes(face_like(32, 32))[:80], {}, 400, "corrupt_image"),
    "50000x50000 header": (fake_png_header(50000, 50000), {}, 413, "too_many_pixels"),
    "70x70 at x8 (output over 512)": (png_bytes(face_like(70, 70)), {"scale": 8}, 413, "too_many_pixels"),
    "wrong scale": (png_bytes(face_like(16, 16)), {"scale": 3}, 400, "bad_scale"),
    "scale not a number": (png_bytes(face_like(16, 16)), {"scale": "x"}, 400, "bad_scale"),
    "wrong format": (png_bytes(face_like(16, 16)), {"format": "gif"}, 400, "bad_format"),
    "animated gif": (animated_gif(), {}, 415, "animated_image"),
    "cmyk jpeg": (encoded(Image.fromarray(face_like(16, 16)).convert("CMYK"), format="JPEG"), {}, 200, (128, 128)),
    "16-bit png": (encoded(Image.fromarray(face_like(16, 16)[:, :, 0].astype(np.uint16) * 257), format="PNG"), {}, 200, (128, 128)),
    "rgba png": (png_bytes(face_like(16, 16, channels=4)), {}, 200, (128, 128)),
    "palette gif": (encoded(Image.fromarray(face_like(16, 16)).convert("P"), format="GIF"), {}, 200, (128, 128)),
    "1x1 image": (png_bytes(np.full((1, 1, 3), 128, dtype=np.uint8)), {"scale": 4}, 200, (4, 4)),
}


def test_bad_and_odd_inputs_get_their_documented_answers(cluster):
    for name, (body, query, status, expected) in BAD_AND_ODD_INPUTS.items():
        response = post(cluster.url, body, **query)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
        if status == 200:
            assert Image.open(io.BytesIO(response.content)).size == expected, name
        else:
            assert response.headers["content-type"] == "application/json", name
            assert response.json()["error"] == expected and response.json()["detail"], name
    # Still healthy afterwards.
    assert httpx.get(f"{cluster.url}/readyz").status_code == 200
    assert post(cluster.url, png_bytes(face_like(16, 16))).status_code == 200
    metrics = httpx.get(f"{cluster.url}/metrics").text
    assert metric_value(metrics, "portraitsr_requests_total", {"outcome": "bad_input"}) >= 8


def test_concurrent_requests_form_batches(cluster):
    data = png_bytes(face_like(16, 16, seed=9))
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: post(cluster.url, data, scale=8), range(24)))
    assert all(r.status_code == 200 for r in responses)
    assert max(int(r.headers["x-batch-size"]) for r in responses) > 1
    worker_metrics = httpx.get(f"{cluster.worker.metrics_url}/metrics").text
    runs = metric_value(worker_metrics, "portraitsr_worker_batch_size_count")
    images = metric_value(worker_metrics, "portraitsr_worker_batch_size_sum")
    assert images > runs  # some model run had more than one image
    assert 'provider="CPUExecutionProvider"' in worker_metrics


def test_full_queue_is_429_with_retry_after_and_late_jobs_are_504_and_never_run(cluster):
    data = png_bytes(face_like(16, 16))
    worker_metrics = lambda: httpx.get(f"{cluster.worker.metrics_url}/metrics").text  # noqa: E731
    jobs = lambda outcome: metric_value(worker_metrics(), "portraitsr_worker_jobs_total", {"outcome": outcome})  # noqa: E731
    pending = lambda: cluster.redis().xpending("portraitsr:jobs", "portraitsr-workers")["pending"]  # noqa: E731
    ok_before, expired_before, pending_before = jobs("ok"), jobs("expired"), pending()
    os.kill(cluster.worker.pid, signal.SIGSTOP)  # nothing is consumed while stopped
    try:
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(post, cluster.tight_url, data) for _ in range(2)]
            wait_until(lambda: cluster.redis().xlen("portraitsr:jobs") >= 2, 10, message="two queued jobs")
            rejected = post(cluster.tight_url, data)
            assert rejected.status_code == 429
            assert int(rejected.headers["retry-after"]) >= 1
            assert rejected.json()["error"] == "queue_full"
            late = [future.result() for future in waiting]
        assert [r.status_code for r in late] == [504, 504]
        assert late[0].json()["error"] == "deadline_exceeded"
    finally:
        # Redis may have handed jobs to the worker's blocked read before it stopped (the API deleted
        # the others at their deadline): the worker must drop exactly those as expired, run none.
        handed = pending() - pending_before
        os.kill(cluster.worker.pid, signal.SIGCONT)
    wait_until(lambda: jobs("expired") == expired_before + handed and pending() == pending_before, 10,
               message="the jobs handed to the stopped worker to be dropped as expired")
    assert jobs("ok") == ok_before
    metrics = httpx.get(f"{cluster.tight_url}/metrics").text
    assert metric_value(metrics, "portraitsr_requests_total", {"outcome": "rejected_429"}) == 1
    assert metric_value(metrics, "portraitsr_requests_total", {"outcome": "timeout_504"}) == 2
    assert post(cluster.url, data).status_code == 200


def test_worker_skips_a_job_whose_deadline_passed(cluster):
    redis = cluster.redis()
    worker_metrics = lambda: httpx.get(f"{cluster.worker.metrics_url}/metrics").text  # noqa: E731
    expired_before = metric_value(worker_metrics(), "portraitsr_worker_jobs_total", {"outcome": "expired"})
    ok_before = metric_value(worker_metrics(), "portraitsr_worker_jobs_total", {"outcome": "ok"})
    pixels = np.zeros((16, 16, 3), dtype=np.float32).tobytes()
    job = Job("late-job", "portraitsr:replies:test-late", 8, 16, 16, time.time() - 1, time.time() - 2, pixels)
    redis.xadd("portraitsr:jobs", job.to_fields())
    wait_until(
        lambda: metric_value(worker_metrics(), "portraitsr_worker_jobs_total", {"outcome": "expired"}) == expired_before + 1,
        10, message="the expired job to be dropped",
    )
    assert metric_value(worker_metrics(), "portraitsr_worker_jobs_total", {"outcome": "ok"}) == ok_before
    assert redis.xlen("portraitsr:replies:test-late") == 0  # no answer computed
    assert redis.xpending("portraitsr:jobs", "portraitsr-workers")["pending"] == 0  # acknowledged


def test_health_metrics_openapi_and_page(cluster):
    assert httpx.get(f"{cluster.url}/livez").json() == {"alive": True}
    ready = httpx.get(f"{cluster.url}/readyz").json()
    model = ready["workers"][0]["models"][0]
    assert ready["ready"] and model["provider"] == "CPUExecutionProvider"
    assert (model["runtime"], model["precision"]) == ("onnxruntime", "fp32")  # the cluster's setting
    assert httpx.get(f"{cluster.worker.metrics_url}/readyz").json()["ready"]
    metrics = httpx.get(f"{cluster.url}/metrics").text
    for name in ("portraitsr_request_duration_seconds_bucket", "portraitsr_queue_wait_seconds_bucket",
                 "portraitsr_inference_seconds_bucket", "portraitsr_batch_size_bucket", "portraitsr_queue_depth"):
        assert name in metrics, name
    schema = httpx.get(f"{cluster.url}/openapi.json").json()
    operation = schema["paths"]["/upscale"]["post"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(operation["requestBody"]["content"])
    assert {"200", "400", "413", "415", "429", "504"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} == {"scale", "format", "model"}
    assert "X-Model" in operation["responses"]["200"]["headers"]
    page = httpx.get(f"{cluster.url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_multipart_without_image_field_and_oversized_bodies(cluster):
    no_image = httpx.post(f"{cluster.url}/upscale", files={"picture": ("a.png", png_bytes(face_like(16, 16)), "image/png")})
    assert no_image.status_code == 400 and no_image.json()["error"] == "empty_body"
    huge = b"\x89PNG" + b"\0" * (4 * 1024 * 1024 + 1)
    for response in (
        httpx.post(f"{cluster.url}/upscale", files={"image": ("a.png", huge, "image/png")}, timeout=30),
        httpx.post(f"{cluster.url}/upscale", content=huge, timeout=30),
    ):
        assert response.status_code == 413 and response.json()["error"] == "too_large"
