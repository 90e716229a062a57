"""The face-detection benchmark's scoring rules and its Haar / dlib adapters (benchmark-only packages)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from benchmarks.face_detection import Detection, dlib_landmarks, make_detector, score  # noqa: E402
from training.data.synthetic import synthetic_face

TRUTH = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [43.0, 70.0], [57.0, 70.0]])  # inter-ocular 20


def test_box_only_detections_match_by_the_eyes_they_hold_and_have_no_nme():
    holds = Detection((25.0, 30.0, 75.0, 85.0), 1.0)
    misses_an_eye = Detection((45.0, 30.0, 95.0, 85.0), 1.0)
    too_wide = Detection((0.0, 0.0, 120.0, 120.0), 1.0)  # 6 inter-ocular distances
    assert score([holds], [TRUTH]) == (1, [], [], 0)
    assert score([misses_an_eye, too_wide], [TRUTH])[::3] == (0, 2)


def test_three_point_landmarks_are_scored_on_eyes_and_nose_and_points_restricts_further():
    shifted = Detection((25.0, 30.0, 75.0, 85.0), 1.0, TRUTH[:3] + [2.0, 0.0])
    found, errors, offsets, false = score([shifted], [TRUTH])
    assert (found, false) == (1, 0) and errors == [pytest.approx(0.1)]
    np.testing.assert_allclose(offsets[0], [2.0, 0.0])
    nose_off = Detection((25.0, 30.0, 75.0, 85.0), 1.0, TRUTH[:3] + [[0, 0], [0, 0], [0, 6]])
    assert score([nose_off], [TRUTH])[1] == [pytest.approx(0.1)]
    assert score([nose_off], [TRUTH], points=2)[1] == [pytest.approx(0.0)]
    far = Detection((25.0, 30.0, 75.0, 85.0), 1.0, TRUTH[:3] + [0.0, 11.0])  # eye midpoint 0.55 io away
    assert score([far], [TRUTH])[0] == 0
    assert score([far], [TRUTH], match="box")[0] == 1


def test_dlib_parts_map_to_smaller_x_eye_larger_x_eye_and_nose():
    parts = np.array([[70.0, 50.0], [60.0, 52.0], [30.0, 50.0], [40.0, 52.0], [50.0, 75.0]])
    np.testing.assert_allclose(dlib_landmarks(parts), [[35.0, 51.0], [65.0, 51.0], [50.0, 75.0]])


def drawn_face(side: int) -> tuple[np.ndarray, np.ndarray]:
    canvas = Image.new("RGB", (side + 80, side + 80), (110, 140, 95))
    canvas.paste(synthetic_face(side), (40, 40))
    return np.asarray(canvas), np.array([[50.5, 60.5], [78.5, 60.5]]) * side / 128 + 40


def test_haar_adapter_boxes_the_drawn_face():
    pytest.importorskip("cv2")
    picture, eyes = drawn_face(128)
    faces = make_detector("haar").detect(picture)
    assert len(faces) == 1 and faces[0].landmarks is None
    assert score(faces, [eyes])[0] == 1


def test_dlib_adapter_finds_the_drawn_face_with_its_eyes_in_order():
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:  # its import needs pkg_resources: not imported
        pytest.skip("face_recognition_models is not installed")
    picture, eyes = drawn_face(96)
    faces = make_detector("dlib", upsample=1).detect(picture)
    assert len(faces) == 1 and faces[0].landmarks.shape == (3, 2)
    assert np.abs(faces[0].landmarks[:2] - eyes).max() < 0.25 * np.linalg.norm(eyes[1] - eyes[0])
