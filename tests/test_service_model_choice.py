"""``model=auto|clean|real`` end to end: real redis-server, worker and API processes, a release with a
clean and a real fixture model per scale (other weights, so the pixels tell which ran), and one
with clean models only (what the release ships until the real models are trained)."""

from __future__ import annotations

import io
import time
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import Cluster, build_fixture_release, fixture_model_name, png_bytes, wait_until

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE
from service.core.images import decode_image
from service.core.inference import load_runners, upscale
from service.queue.protocol import Job, Reply, ReplyStatus
from training.data.synthetic import synthetic_face

STREAM = "portraitsr:jobs"


def start(tmp_path_factory, name: str, variants: tuple[str, ...]) -> Cluster:
    workdir = tmp_path_factory.mktemp(name)
    # A batch wait long enough that jobs enqueued together are read together.
    cluster = Cluster(workdir, build_fixture_release(workdir / "release", variants=variants), max_batch_wait_ms=200)
    cluster.start_redis()
    cluster.worker = cluster.start_worker()
    cluster.url = cluster.start_api()
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start(tmp_path_factory, "both", ("clean", "real"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def clean_only(tmp_path_factory):
    cluster = start(tmp_path_factory, "clean-only", ("clean",))
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def runners(cluster):
    return load_runners(load_manifest(cluster.manifest), REFERENCE.with_threads(1))


def face(side: int) -> np.ndarray:
    return np.asarray(synthetic_face(side))


def post(url: str, data: bytes, route: str = "upscale", **params) -> httpx.Response:
    return httpx.post(f"{url}/{route}", params=params, content=data, timeout=60)


def expected(runners, data: bytes, scale: int, variant: str) -> np.ndarray:
    return np.asarray(upscale(runners[scale, variant], decode_image(data)))


def pixels_of(response: httpx.Response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)))


@pytest.mark.parametrize(("side", "scale"), [(32, 4), (16, 8)])
def test_auto_runs_a_clean_png_on_the_clean_model_and_a_jpeg_on_the_real_one(cluster, runners, side, scale):
    png = png_bytes(face(side))
    response = post(cluster.url, png, scale=scale)
    assert response.status_code == 200, response.text
    assert response.headers["x-model"] == fixture_model_name(scale, "clean")
    np.testing.assert_array_equal(pixels_of(response), expected(runners, png, scale, "clean"))

    jpeg = png_bytes(face(side), format="JPEG", quality=75)
    response = post(cluster.url, jpeg, scale=scale, model="auto")
    assert response.status_code == 200, response.text
    assert response.headers["x-model"] == fixture_model_name(scale, "real")
    np.testing.assert_array_equal(pixels_of(response), expected(runners, jpeg, scale, "real"))
    assert not np.array_equal(expected(runners, jpeg, scale, "real"), expected(runners, jpeg, scale, "clean"))


def test_clean_and_real_are_run_as_asked_whatever_the_upload(cluster, runners):
    png, jpeg = png_bytes(face(32)), png_bytes(face(32), format="JPEG", quality=60)
    for data, model in ((png, "real"), (jpeg, "clean")):
        response = post(cluster.url, data, scale=4, model=model)
        assert response.status_code == 200, response.text
        assert response.headers["x-model"] == fixture_model_name(4, model)
        np.testing.assert_array_equal(pixels_of(response), expected(runners, data, 4, model))


@pytest.mark.parametrize("route", ["upscale", "restore"])
def test_a_model_that_is_not_a_choice_is_400(cluster, route):
    response = post(cluster.url, png_bytes(face(32)), route, scale=4, model="sharp")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_model"
    assert "auto, clean, real" in response.json()["detail"]


def test_readyz_lists_every_model_with_its_variant(cluster):
    (worker,) = httpx.get(f"{cluster.url}/readyz").json()["workers"]
    models = {(model["name"], model["scale"], model["variant"]) for model in worker["models"]}
    assert models == {(fixture_model_name(s, v), s, v) for s in (4, 8) for v in ("clean", "real")}


def test_restore_runs_the_photos_faces_on_the_model_auto_picks(cluster):
    canvas = Image.new("RGB", (120, 90), (120, 140, 160))
    canvas.paste(synthetic_face(56), (30, 16))
    photo = np.asarray(canvas)
    for data, variant in ((png_bytes(photo), "clean"), (png_bytes(photo, format="JPEG", quality=70), "real")):
        response = post(cluster.url, data, "restore", scale=4)
        assert response.status_code == 200, response.text
        assert response.headers["x-faces"] == "1"
        assert response.headers["x-model"] == fixture_model_name(4, variant)
    response = post(cluster.url, png_bytes(photo), "restore", scale=4, model="real")
    assert response.headers["x-model"] == fixture_model_name(4, "real")


def raw_job(scale: int, variant: str, reply_to: str) -> Job:
    """A job as the API writes it."""
    pixels = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32).tobytes()
    return Job(uuid.uuid4().hex, reply_to, scale, 16, 16, time.time() + 30, time.time(), pixels, variant=variant)


def replies(redis, stream: str, count: int) -> dict[str, Reply]:
    wait_until(lambda: redis.xlen(stream) >= count, 20, message=f"{count} replies")
    return {reply.job_id: reply for reply in (Reply.from_fields(fields) for _, fields in redis.xrange(stream))}


def test_a_batch_never_mixes_the_clean_and_real_models(cluster):
    redis, stream = cluster.redis(), f"portraitsr:replies:test-{uuid.uuid4().hex[:6]}"
    jobs = [raw_job(8, variant, stream) for variant in ("clean", "real", "clean", "real", "clean", "real")]
    entries = [job.to_fields() for job in jobs]
    del entries[2]["variant"]  # a job from before variants: it runs on the clean model
    pipe = redis.pipeline(transaction=True)  # all six in the stream before the worker reads any
    for entry in entries:
        pipe.xadd(STREAM, entry)
    pipe.execute()
    answered = replies(redis, stream, len(jobs))
    for job in jobs:
        reply = answered[job.job_id]
        assert reply.status is ReplyStatus.OK
        assert reply.meta.model == fixture_model_name(8, job.variant)
        assert reply.meta.batch_size == 3  # the three of its variant, never all six


def test_without_a_real_model_real_is_a_clear_400_and_auto_runs_clean(clean_only):
    jpeg = png_bytes(face(32), format="JPEG", quality=50)
    response = post(clean_only.url, jpeg, scale=4, model="real")
    assert response.status_code == 400
    assert response.json()["error"] == "no_model"
    assert response.json()["detail"] == "no real model at ×4 (the models at ×4: clean)"
    response = post(clean_only.url, jpeg, scale=4)
    assert response.status_code == 200
    assert response.headers["x-model"] == fixture_model_name(4, "clean")


def test_a_worker_answers_a_job_for_a_model_it_lacks_with_no_model(clean_only):
    redis, stream = clean_only.redis(), f"portraitsr:replies:test-{uuid.uuid4().hex[:6]}"
    job = raw_job(4, "real", stream)
    redis.xadd(STREAM, job.to_fields())
    reply = replies(redis, stream, 1)[job.job_id]
    assert reply.status is ReplyStatus.NO_MODEL
    assert reply.meta.error == "no real model for scale 4 on this worker"
