"""The HTTP mapping of the API without Redis: the broker is replaced through dependency_overrides."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_helpers import face_like, metric_value, png_bytes
from test_service_restore import group_photo

from portraitsr.manifest import ModelVariant
from service.core.settings import ServiceSettings
from service.http.app import create_app
from service.http.auth import hash_key
from service.http.dependencies import get_broker
from service.queue.errors import DeadlinePassed, QueueError, QueueFull, QueueUnavailable
from service.queue.protocol import Reply, ReplyMeta, ReplyStatus


class ScriptedBroker:
    """Answers every job with ``answer``: a reply built from the input (nearest ×scale) or a queue error."""

    def __init__(self, answer: str | QueueError = "ok", variants=(ModelVariant.CLEAN, ModelVariant.REAL)):
        self.answer = answer
        self.jobs = 0
        self.available = set(variants)
        self.variant = None

    async def submit(self, image, scale, deadline, variant=ModelVariant.CLEAN):
        self.jobs += 1
        self.variant = variant
        if isinstance(self.answer, QueueError):
            raise self.answer
        if self.answer != "ok":
            return Reply("job", ReplyStatus(self.answer), ReplyMeta(error="it went wrong"))
        rgb = (image.rgb * 255).round().astype(np.uint8).repeat(scale, 0).repeat(scale, 1)
        meta = ReplyMeta(out_h=rgb.shape[0], out_w=rgb.shape[1], batch_size=2, inference_ms=3.5, queue_wait_ms=1.25,
                         provider="CPUExecutionProvider", model="m", worker="w-secret-id")
        return Reply("job", ReplyStatus.OK, meta, rgb.tobytes())

    async def submit_many(self, images, scale, deadline, variant=ModelVariant.CLEAN):
        return [await self.submit(image, scale, deadline, variant) for image in images]

    def variants(self, scale):
        return self.available

    def readiness(self, detailed=True):
        return {"ready": True, "redis": True, "reason": None, "workers": [{"worker": "w-secret-id"}] if detailed else 1}


def client_for(broker: ScriptedBroker, **settings) -> TestClient:
    app = create_app(ServiceSettings(**settings))
    app.dependency_overrides[get_broker] = lambda: broker
    return TestClient(app)  # not entered: the lifespan (which connects to Redis) does not run


FACE = png_bytes(face_like(16, 16))


def test_a_reply_becomes_the_image_and_its_headers():
    broker = ScriptedBroker()
    response = client_for(broker).post("/upscale?scale=4", content=FACE, headers={"X-Request-ID": "abc-1"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    assert response.headers["x-request-id"] == "abc-1" and response.headers["x-batch-size"] == "2"
    assert response.headers["x-inference-ms"] == "3.5" and "queue;dur=1.2" in response.headers["server-timing"]


@pytest.mark.parametrize(("answer", "status", "code", "outcome"), [
    (QueueFull("full", retry_after_s=3), 429, "queue_full", "rejected_429"),
    (QueueUnavailable("down"), 503, "queue_unavailable", "error"),
    (DeadlinePassed("late"), 504, "deadline_exceeded", "timeout_504"),
    ("dead_lettered", 500, "dead_lettered", "error"),
    ("no_model", 400, "no_model", "bad_input"),
])
@pytest.mark.parametrize("route", ["/upscale", "/restore"])
def test_queue_errors_and_failed_replies_map_to_statuses_and_outcomes(route, answer, status, code, outcome):
    client = client_for(ScriptedBroker(answer))
    body = FACE if route == "/upscale" else png_bytes(group_photo())
    response = client.post(route, content=body)
    assert response.status_code == status and response.json()["error"] == code
    assert response.json()["request_id"] == response.headers["x-request-id"]
    if status == 429:
        assert response.headers["retry-after"] == "3"
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "portraitsr_requests_total", {"outcome": outcome}) == 1
    assert metric_value(metrics, "portraitsr_requests_total") == 1


@pytest.mark.parametrize("query", ["scale=abc", "scale=3", "format=", "format=gif"])
def test_bad_parameters_never_reach_the_broker_and_unsafe_request_ids_are_replaced(query):
    broker = ScriptedBroker()
    response = client_for(broker).post(f"/upscale?{query}", content=FACE, headers={"X-Request-ID": "<script>" + "A" * 10240})
    assert response.status_code == 400 and response.json()["error"] in ("bad_scale", "bad_format")
    assert broker.jobs == 0
    request_id = response.headers["x-request-id"]
    assert len(request_id) <= 64 and "<" not in response.text and request_id == response.json()["request_id"]


def test_405_and_404_use_the_error_shape():
    client = client_for(ScriptedBroker())
    for response, status in ((client.get("/upscale"), 405), (client.get("/nothing-here"), 404)):
        assert response.status_code == status
        assert set(response.json()) == {"error", "detail", "request_id"}


def test_openapi_lists_the_allowed_scales_formats_and_models():
    operation = client_for(ScriptedBroker()).get("/openapi.json").json()["paths"]["/upscale"]["post"]
    schemas = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert schemas["scale"]["enum"] == [4, 8] and schemas["format"]["enum"] == ["png", "jpeg", "webp"]
    assert schemas["model"]["enum"] == ["auto", "clean", "real"] and schemas["model"]["default"] == "auto"
    assert "X-Model" in operation["responses"]["200"]["headers"]


def test_the_model_parameter_picks_the_job_variant_and_x_model_names_the_model():
    broker = ScriptedBroker()
    client = client_for(broker)
    jpeg = png_bytes(face_like(16, 16), format="JPEG", quality=60)
    for data, model, variant in ((FACE, "clean", "clean"), (FACE, "real", "real"), (jpeg, "auto", "real")):
        response = client.post("/upscale", params={"scale": 4, "model": model}, content=data)
        assert response.status_code == 200 and response.headers["x-model"] == "m"
        assert broker.variant == variant
    response = client.post("/upscale", params={"model": "best"}, content=FACE)
    assert response.status_code == 400 and response.json()["error"] == "bad_model"


def test_without_the_real_model_real_is_refused_and_auto_falls_back_to_clean():
    broker = ScriptedBroker(variants=(ModelVariant.CLEAN,))
    client = client_for(broker)
    jpeg = png_bytes(face_like(16, 16), format="JPEG", quality=60)
    response = client.post("/upscale", params={"scale": 8, "model": "real"}, content=jpeg)
    assert response.status_code == 400 and response.json()["error"] == "no_model"
    assert response.json()["detail"] == "no real model at ×8 (the models at ×8: clean)"
    assert broker.jobs == 0
    assert client.post("/upscale", params={"scale": 8}, content=jpeg).status_code == 200
    assert broker.variant == "clean"


def test_api_keys_gate_upscale_and_metrics_but_not_health(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# ops team\n{hash_key('right-key')}\n")
    broker = ScriptedBroker()
    client = client_for(broker, api_keys_file=keys)
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic right-key"}):
        response = client.post("/upscale", content=FACE, headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers=headers).status_code == 401
    assert broker.jobs == 0
    good = {"Authorization": "Bearer right-key"}
    assert client.post("/upscale", content=FACE, headers=good).status_code == 200
    assert client.get("/metrics", headers=good).status_code == 200
    assert client.get("/livez").status_code == 200
    anonymous, known = client.get("/readyz"), client.get("/readyz", headers=good)
    assert anonymous.status_code == known.status_code == 200
    assert "w-secret-id" not in anonymous.text and "w-secret-id" in known.text


def test_a_keys_file_with_a_bad_line_is_refused_at_start(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("not-a-digest\n")
    with pytest.raises(ValueError, match="not a SHA-256"):
        create_app(ServiceSettings(api_keys_file=keys))


def test_hash_key_prints_the_digest_the_api_accepts(capsys, tmp_path):
    from portraitsr.cli import main

    assert main(["hash-key", "right-key"]) == 0
    digest = capsys.readouterr().out.strip()
    keys = tmp_path / "keys"
    keys.write_text(digest + "\n")
    client = client_for(ScriptedBroker(), api_keys_file=keys)
    assert client.post("/upscale", content=FACE, headers={"Authorization": "Bearer right-key"}).status_code == 200


def test_restore_is_gated_by_api_keys_and_answers_in_the_error_shape(tmp_path):
    from test_service_restore import group_photo

    keys = tmp_path / "keys"
    keys.write_text(f"{hash_key('right-key')}\n")
    broker = ScriptedBroker()
    client = client_for(broker, api_keys_file=keys)
    photo = png_bytes(group_photo())
    refused = client.post("/restore", content=photo, headers={"X-Request-ID": "photo-1"})
    assert refused.status_code == 401 and refused.json() == {
        "error": "unauthorized", "detail": refused.json()["detail"], "request_id": "photo-1"}
    assert refused.headers["x-request-id"] == "photo-1" and broker.jobs == 0
    good = {"Authorization": "Bearer right-key", "X-Request-ID": "photo-2"}
    bad_scale = client.post("/restore?scale=3", content=photo, headers=good)
    assert bad_scale.status_code == 400 and bad_scale.json()["error"] == "bad_scale"
    assert bad_scale.json()["request_id"] == "photo-2" and broker.jobs == 0
    response = client.post("/restore?scale=4", content=photo, headers=good)
    assert response.status_code == 200 and response.headers["x-request-id"] == "photo-2"
    assert response.headers["x-faces"] == "3" and broker.jobs == 3  # one job per face, through submit_many
    assert Image.open(io.BytesIO(response.content)).size == (1000, 400)


def test_restore_maps_a_full_queue_to_429_with_retry_after():
    busy = QueueFull("no room for 3 faces", retry_after_s=2)
    response = client_for(ScriptedBroker(busy)).post("/restore", content=png_bytes(group_photo()))
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert response.json()["error"] == "queue_full" and response.headers["x-request-id"]


def test_every_queue_error_has_an_http_answer():
    from service.http.errors import to_api_error

    examples = {QueueFull: QueueFull("full", retry_after_s=2)}
    for kind in QueueError.__subclasses__():
        answer = to_api_error(examples.get(kind) or kind("why"))
        assert answer.status >= 400 and answer.code and answer.outcome != "ok"
