"""The shipped MTCNN ONNX nets against PyTorch, and the numpy cascade on generated pictures."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from service.faces.detector import DEFAULT_DETECTOR_DIR, FaceDetector, nms
from training.data.synthetic import synthetic_face


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_onnx_nets_match_the_pytorch_modules_on_fixed_inputs(name):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from training.face_detector_export import build_net, max_parity_error, state_from_onnx

    onnx_path = DEFAULT_DETECTOR_DIR / f"mtcnn-{name}.onnx"
    net = build_net(name, state_from_onnx(name, onnx_path))  # strict load: every parameter is in the ONNX
    assert max_parity_error(name, net, onnx_path) < 1e-4


def test_shipped_nets_are_the_ones_the_manifest_names():
    manifest = json.loads((DEFAULT_DETECTOR_DIR / "manifest.json").read_text())
    for entry in manifest["nets"].values():
        digest = hashlib.sha256((DEFAULT_DETECTOR_DIR / entry["onnx"]).read_bytes()).hexdigest()
        assert digest == entry["onnx_sha256"]


def group_picture(sides: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Drawn faces of the given sides on a plain background; their eye centres in the picture."""
    width = sum(sides) + 20 * (len(sides) + 1)
    canvas = Image.new("RGB", (width, max(sides) + 40), (110, 140, 95))
    eyes, x = [], 20
    for k, side in enumerate(sides):
        canvas.paste(synthetic_face(side, hue_shift=30 * k), (x, 20))
        eyes.append(np.array([[50.5, 60.5], [78.5, 60.5]]) * side / 128 + [x, 20])
        x += side + 20
    return np.asarray(canvas), eyes


def test_finds_every_drawn_face_with_its_eyes(detector):
    picture, eyes = group_picture([28, 40, 64, 96])
    faces = detector.detect(picture)
    assert len(faces) == 4
    for truth in eyes:
        inter_ocular = np.linalg.norm(truth[1] - truth[0])
        match = min(faces, key=lambda f: np.linalg.norm(f.landmarks[:2] - truth))
        assert np.abs(match.landmarks[:2] - truth).max() < 0.25 * inter_ocular
        assert 0.7 < match.inter_ocular / inter_ocular < 1.3
        x1, y1, x2, y2 = match.box
        assert x1 < truth[:, 0].min() and truth[:, 0].max() < x2 and y1 < truth[:, 1].min() < y2


def test_float_input_and_a_picture_without_faces(detector):
    picture, _ = group_picture([48])
    assert len(detector.detect(picture.astype(np.float32) / 255.0)) == 1
    yy, xx = np.mgrid[0:120, 0:200] / 200.0
    landscape = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * np.sin(9 * yy), 0.4 + 0.3 * yy], axis=2)
    assert detector.detect(landscape.astype(np.float32)) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40]], dtype=np.float64)
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2]
