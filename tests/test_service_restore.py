"""``POST /restore`` end to end: real redis-server, worker and API processes, generated group photos.

The ×4 model of this release is an *identity* model (cubic upscale, nothing added), so the
restored photo must equal the bicubic upscale exactly: that pins the alignment, the residual
paste-back and the blending. The ×8 model is the usual fixture (cubic plus a small convolution),
so faces change there, and only there.
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import Cluster, build_fixture_model, png_bytes, wait_until

from portraitsr.manifest import MANIFEST_NAME, model_entry, update_manifest
from training.data.synthetic import synthetic_face

# Drawn faces with inter-ocular distances of 8.75, 12.25 and 15.75 px: all restorable at ×4.
FACE_SIDES = ((40, 12, 20), (56, 80, 14), (72, 160, 10))
MAX_SIDE = 300


def build_identity_model(path, scale: int) -> None:
    """``lr`` → cubic upscale (ONNX Resize, a = -0.75), clipped: a model that restores nothing."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="cubic", cubic_coeff_a=-0.75,
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Clip", ["up", "zero", "one"], ["sr"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1.0, 1.0, scale, scale], dtype=np.float32), "scales"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes, f"identity_x{scale}", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H", "W"])], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def build_release(directory):
    directory.mkdir(parents=True, exist_ok=True)
    build_identity_model(directory / "identity-x4.onnx", 4)
    build_fixture_model(directory / "fixture-x8.onnx", 8)
    manifest = directory / MANIFEST_NAME
    for name, scale in (("identity-x4", 4), ("fixture-x8", 8)):
        update_manifest(manifest, model_entry(name, scale, directory / f"{name}.onnx", directory))
    return manifest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("restore")
    # max_batch_wait_ms 0 (the default): an idle worker does not wait for more jobs, so the faces of
    # a photo share a batch only because they are enqueued together.
    cluster = Cluster(workdir, build_release(workdir / "release"), max_batch_wait_ms=0,
                      restore_max_input_side=MAX_SIDE, restore_max_output_side=2400)
    cluster.start_redis()
    cluster.start_worker()
    cluster.url = cluster.start_api()
    cluster.tight_url = cluster.start_api("api-tight", queue_max_length=2)
    wait_until(lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30, message="readyz")
    yield cluster
    cluster.close()


def background(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [0.35 + 0.3 * xx, 0.5 + 0.15 * np.sin(7 * yy + 2 * xx), 0.45 + 0.25 * yy]
    return np.clip(np.stack(planes, axis=2) * 255, 0, 255).astype(np.uint8)


def group_photo(faces=FACE_SIDES) -> np.ndarray:
    canvas = Image.fromarray(background(100, 250))
    for k, (side, x, y) in enumerate(faces):
        canvas.paste(synthetic_face(side, hue_shift=25 * k), (x, y))
    return np.asarray(canvas)


def bicubic(photo: np.ndarray, scale: int) -> np.ndarray:
    image = Image.fromarray(photo)
    return np.asarray(image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC))


def restore(url: str, data: bytes, **params) -> httpx.Response:
    return httpx.post(f"{url}/restore", params=params, content=data, timeout=60)


def test_identity_model_gives_back_the_upscaled_photo_exactly(cluster):
    photo = group_photo()
    response = httpx.post(f"{cluster.url}/restore", params={"scale": 4},
                          files={"image": ("group.png", png_bytes(photo), "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-faces"] == "3" and response.headers["x-faces-detected"] == "3"
    boxes = json.loads(response.headers["x-face-boxes"])
    assert sorted(round(b["box"][0]) // 40 for b in boxes) == sorted(x // 40 for _, x, _ in FACE_SIDES)
    assert all(b["score"] > 0.7 and b["status"] == "restored" for b in boxes)
    assert "detect;dur=" in response.headers["server-timing"]
    output = np.asarray(Image.open(io.BytesIO(response.content)))
    assert output.shape == (400, 1000, 3)
    np.testing.assert_array_equal(output, bicubic(photo, 4))


def test_faces_of_one_photo_run_in_one_batch(cluster):
    same_frame = ((40, 12, 20), (40, 80, 14), (40, 160, 10))  # three faces at the ×4 model's size
    response = restore(cluster.url, png_bytes(group_photo(same_frame)), scale=4)
    assert response.status_code == 200
    assert response.headers["x-batch-sizes"] == "3,3,3"


def test_faces_larger_than_the_model_run_in_frames_of_their_own_size(cluster):
    response = restore(cluster.url, png_bytes(group_photo()), scale=4, report="json")
    frames = sorted((face["inter_ocular"], face["frame"]) for face in response.json()["faces"])
    assert [frame for _, frame in frames] == [32, 44, 56]  # 128/4 up to 11.2 px between the eyes, then wider
    response = restore(cluster.url, png_bytes(group_photo()), scale=4)
    assert response.status_code == 200 and response.headers["x-faces"] == "3"
    assert sorted(response.headers["x-batch-sizes"].split(",")) == ["1", "1", "1"]  # one model run per frame size


def test_a_photo_with_more_faces_than_the_queue_holds_is_429_with_retry_after(cluster):
    response = restore(cluster.tight_url, png_bytes(group_photo()), scale=4)  # 3 faces, room for 2
    assert response.status_code == 429 and response.json()["error"] == "queue_full"
    assert int(response.headers["retry-after"]) >= 1
    assert restore(cluster.tight_url, png_bytes(group_photo(FACE_SIDES[:2])), scale=4).status_code == 200


def test_a_real_model_changes_the_faces_and_nothing_else(cluster):
    faces = ((24, 12, 20), (32, 80, 14))  # inter-ocular 5.25 and 7 px: near the ×8 model's 5.6
    photo = group_photo(faces)
    response = restore(cluster.url, png_bytes(photo), scale=8)
    assert response.status_code == 200, response.text
    assert response.headers["x-faces"] == "2"
    output = np.asarray(Image.open(io.BytesIO(response.content))).astype(int)
    changed = np.abs(output - bicubic(photo, 8)).max(axis=2) > 0
    for side, x, y in faces:
        face = changed[8 * (y + side // 3):8 * (y + 2 * side // 3), 8 * (x + side // 3):8 * (x + 2 * side // 3)]
        assert face.mean() > 0.5  # the middle of each face is the model's
    assert not changed[:, 8 * 140:].any()  # far from both faces: the upscaled photo, untouched
    assert not changed[: 8 * 5].any() and not changed[8 * 95:].any()


def test_a_photo_without_faces_is_the_upscaled_photo(cluster):
    photo = background(60, 90)
    response = restore(cluster.url, png_bytes(photo), scale=4, format="png")
    assert response.status_code == 200
    assert response.headers["x-faces"] == "0" and json.loads(response.headers["x-face-boxes"]) == []
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), bicubic(photo, 4))


def test_json_report_lists_the_faces_without_running_the_model(cluster):
    response = restore(cluster.url, png_bytes(group_photo()), scale=4, report="json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["faces_to_restore"] == 3 and (report["width"], report["height"]) == (250, 100)
    for face in report["faces"]:
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["status"] == "restored"
        assert 7 < face["inter_ocular"] < 18


def test_alpha_is_kept_and_jpeg_is_flattened(cluster):
    photo = group_photo()
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], axis=2)
    rgba[:10, :10, 3] = 0
    response = restore(cluster.url, png_bytes(rgba, mode="RGBA"), scale=4)
    output = Image.open(io.BytesIO(response.content))
    assert response.status_code == 200 and output.mode == "RGBA" and output.size == (1000, 400)
    assert np.asarray(output.getchannel("A"))[:30, :30].max() == 0
    response = restore(cluster.url, png_bytes(photo), scale=4, format="jpeg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"


def fake_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_limits_and_bad_input(cluster):
    too_wide = restore(cluster.url, png_bytes(background(20, MAX_SIDE + 1)), scale=4)
    assert too_wide.status_code == 413 and too_wide.json()["error"] == "too_many_pixels"
    assert restore(cluster.url, png_bytes(background(20, MAX_SIDE)), scale=4).status_code == 200
    too_wide_at_x8 = restore(cluster.url, png_bytes(background(20, MAX_SIDE)), scale=8)  # 2400 / 8 = 300: fits
    assert too_wide_at_x8.status_code == 200
    bomb = restore(cluster.url, fake_png_header(60000, 60000), scale=4)  # refused from the header alone
    assert bomb.status_code == 413 and bomb.json()["error"] == "too_many_pixels"
    assert restore(cluster.url, b"", scale=4).status_code == 400
    assert restore(cluster.url, b"not an image at all", scale=4).status_code == 415
    for params, code in (({"scale": 3}, "bad_scale"), ({"format": "tiff"}, "bad_format"), ({"report": "xml"}, "bad_report")):
        response = restore(cluster.url, png_bytes(background(20, 20)), **params)
        assert response.status_code == 400 and response.json()["error"] == code


def test_the_cli_sends_photos_to_the_service(cluster, tmp_path):
    import subprocess
    import sys

    from service_helpers import REPO

    photo = group_photo()
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "group.png")
    result = subprocess.run(
        [sys.executable, "-m", "portraitsr.cli", "restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
         "--url", cluster.url, "--scale", "4"], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 of 3 faces restored" in result.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "group.png")), bicubic(photo, 4))


def test_exif_orientation_is_applied_before_the_faces_are_found(cluster):
    upright = group_photo()
    sideways = np.ascontiguousarray(np.rot90(upright, k=1))  # stored turned; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(sideways).save(buffer, format="JPEG", quality=98, exif=exif.tobytes())
    response = restore(cluster.url, buffer.getvalue(), scale=4)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (1000, 400)
    assert response.headers["x-faces"] == "3"


def test_openapi_documents_restore(cluster):
    operation = httpx.get(f"{cluster.url}/openapi.json").json()["paths"]["/restore"]["post"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(operation["requestBody"]["content"])
    assert {"200", "400", "413", "415", "429", "504"} <= set(operation["responses"])
    assert {"X-Faces", "X-Face-Boxes"} <= set(operation["responses"]["200"]["headers"])
    assert {p["name"] for p in operation["parameters"]} == {"scale", "format", "report", "model"}
    assert "X-Model" in operation["responses"]["200"]["headers"]
