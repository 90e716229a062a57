"""Alignment, warps and paste-back of whole-photo restoration, without the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from portraitsr.release import round_to_uint8
from service.faces.alignment import (
    EYE_MID,
    INTER_OCULAR,
    MOUTH,
    TEMPLATE,
    alignment_points,
    apply,
    cubic_upscale,
    face_transform,
    feather_mask,
    fit_similarity,
    is_whole_pixel_shift,
    warp,
)
from service.faces.detector import Face
from service.faces.restoration import (
    FaceStatus,
    RestorePolicy,
    face_status,
    paste_faces,
    plan_faces,
    restore_photo,
    upscale_background,
)

REPO = Path(__file__).resolve().parent.parent


def test_template_is_the_training_framing():
    target = yaml.safe_load((REPO / "training" / "configs" / "framing.yaml").read_text())["target"]
    assert list(EYE_MID) == target["eye_mid"] and target["inter_ocular"] == INTER_OCULAR and list(MOUTH) == target["mouth"]


def test_similarity_fit_recovers_a_known_transform():
    angle, zoom, shift = 0.3, 0.7, np.array([12.0, -5.0])
    matrix = np.array([[zoom * np.cos(angle), -zoom * np.sin(angle), shift[0]], [zoom * np.sin(angle), zoom * np.cos(angle), shift[1]]])
    points = np.array([[10.0, 20.0], [40.0, 22.0], [26.0, 50.0], [5.0, 5.0]])
    np.testing.assert_allclose(fit_similarity(points, apply(matrix, points)), matrix, atol=1e-9)


def landmarks_for(eye_mid, inter_ocular, angle=0.0) -> np.ndarray:
    """Five points of a face whose proportions are the template's, rotated by ``angle``."""
    scale = inter_ocular / INTER_OCULAR
    template = np.array([*TEMPLATE[:2], [64.0, 60.0], TEMPLATE[2] - [8, 0], TEMPLATE[2] + [8, 0]]) - EYE_MID
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return template @ rotation.T * scale + eye_mid


def test_face_transform_puts_the_eyes_where_the_models_expect_them():
    landmarks = landmarks_for((40.0, 30.0), 8.0, angle=0.2)
    transform = face_transform(landmarks, 32, whole_pixel=False)  # the similarity, not a plain crop
    np.testing.assert_allclose(apply(transform, landmarks[:2]), TEMPLATE[:2] / 4, atol=1e-6)


def test_faces_are_whole_pixel_crops_by_default():
    landmarks = landmarks_for((40.3, 30.6), 9.0, angle=0.1)
    transform = face_transform(landmarks, 32)
    assert is_whole_pixel_shift(transform)
    centroid = apply(transform, alignment_points(landmarks)).mean(axis=0)
    assert np.abs(centroid - TEMPLATE.mean(axis=0) / 4).max() <= 0.5
    photo = np.random.default_rng(3).uniform(0, 1, (80, 90, 3)).astype(np.float32)
    left, top = -int(transform[0, 2]), -int(transform[1, 2])
    np.testing.assert_array_equal(warp(photo, transform, 32), photo[top:top + 32, left:left + 32])


def test_warp_samples_the_photo_and_shrinks_with_a_box_filter():
    photo = np.random.default_rng(0).uniform(0, 1, (40, 50, 3)).astype(np.float32)
    shift = np.array([[1.0, 0.0, -7.0], [0.0, 1.0, -3.0]])  # frame = photo moved by whole pixels
    np.testing.assert_allclose(warp(photo, shift, 16), photo[3:19, 7:23], atol=1e-6)
    half = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    expected = photo[:32, :32].reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(warp(photo, half, 16), expected, atol=1e-6)


def test_cubic_upscale_is_onnx_resize_cubic(tmp_path):
    from test_service_restore import build_identity_model

    from portraitsr.runtimes import onnxruntime_session

    build_identity_model(tmp_path / "identity.onnx", 4)
    session = onnxruntime_session(tmp_path / "identity.onnx")
    crop = np.random.default_rng(1).uniform(0, 1, (9, 11, 3)).astype(np.float32)
    (sr,) = session.run(None, {"lr": crop.transpose(2, 0, 1)[None]})
    np.testing.assert_allclose(np.clip(cubic_upscale(crop, 4), 0, 1), sr[0].transpose(1, 2, 0), atol=1e-5)


def test_feather_mask_is_zero_at_the_edge_and_one_inside():
    mask = feather_mask(128, 2.0, 20.0)
    assert mask[0].max() == 0 and mask[:, -1].max() == 0 and mask[64, 64] == 1
    assert np.all(np.diff(mask[64, :64]) >= 0)


@pytest.mark.parametrize(
    ("inter_ocular", "scale", "status", "frame"),
    [(3.0, 4, FaceStatus.TOO_SMALL, 0), (4.0, 4, FaceStatus.TOO_SMALL, 0), (5.0, 4, FaceStatus.RESTORED, 32), (11.2, 4, FaceStatus.RESTORED, 32),
     (16.0, 4, FaceStatus.RESTORED, 48), (23.0, 4, FaceStatus.RESTORED, 68), (44.8, 4, FaceStatus.RESTORED, 128), (50.0, 4, FaceStatus.TOO_LARGE, 0),
     (5.6, 8, FaceStatus.RESTORED, 16), (2.4, 8, FaceStatus.RESTORED, 16), (2.1, 8, FaceStatus.TOO_SMALL, 0), (1.9, 8, FaceStatus.TOO_SMALL, 0),
     (16.8, 8, FaceStatus.RESTORED, 48), (23.0, 8, FaceStatus.TOO_LARGE, 0)],
)
def test_face_status_and_frame_by_size(inter_ocular, scale, status, frame):
    face = Face((0, 0, 1, 1), 0.99, landmarks_for((100.0, 100.0), inter_ocular))
    assert face_status(face, scale, RestorePolicy()) == (status, frame)


def test_a_large_face_is_framed_at_its_own_size_in_the_training_framing():
    photo = np.random.default_rng(5).uniform(0.2, 0.8, (120, 120, 3)).astype(np.float32)
    face = Face((0, 0, 1, 1), 0.99, landmarks_for((60.0, 40.0), 22.4))  # twice the ×4 model's size
    (plan,) = plan_faces(photo, [face], 4, RestorePolicy())
    assert plan.status == FaceStatus.RESTORED and plan.crop.shape == (64, 64, 3) and is_whole_pixel_shift(plan.transform)
    eye_mid = apply(plan.transform, face.landmarks[:2]).mean(axis=0)
    np.testing.assert_allclose(eye_mid, np.array(EYE_MID) / 2, atol=0.5)  # the template, at 64 px


def test_faces_of_different_frame_sizes_run_in_one_model_call_per_size():
    photo = np.random.default_rng(6).uniform(0.2, 0.8, (80, 260, 3)).astype(np.float32)
    faces = [Face((0, 0, 1, 1), 0.99, landmarks_for((40.0 + 60 * k, 30.0), iod)) for k, iod in enumerate((11, 11.2, 16, 16))]
    calls = []

    def run(crops):
        calls.append(crops.shape)
        return identity_run(4)(crops)

    output, plans = restore_photo(photo, faces, 4, run)
    assert sorted(calls) == [(2, 32, 32, 3), (2, 48, 48, 3)]
    assert [plan.status for plan in plans] == [FaceStatus.RESTORED] * 4
    np.testing.assert_array_equal(output, upscale_background(photo, 4))  # identity: exact at every size


def photo_and_faces(count: int, inter_ocular: float = 11.0, spacing: float = 40.0):
    rng = np.random.default_rng(2)
    photo = rng.uniform(0.2, 0.8, (60, 100 + int(spacing * count), 3)).astype(np.float32)
    faces = [Face((0, 0, 1, 1), 0.99 - 0.01 * k, landmarks_for((30.0 + spacing * k, 25.0), inter_ocular, 0.1 * k))
             for k in range(count)]
    return photo, faces


def identity_run(scale: int):
    return lambda crops: [round_to_uint8(np.clip(cubic_upscale(crop, scale), 0, 1)) for crop in crops]


@pytest.mark.parametrize("spacing", [40.0, 12.0])  # apart, and overlapping frames
@pytest.mark.parametrize("whole_pixel_crops", [True, False])
def test_identity_model_leaves_the_upscaled_photo_unchanged(spacing, whole_pixel_crops):
    photo, faces = photo_and_faces(3, spacing=spacing)
    policy = RestorePolicy(whole_pixel_crops=whole_pixel_crops)
    for scale in (4, 8):
        output, plans = restore_photo(photo, faces, scale, identity_run(scale), policy)
        assert all(plan.status == FaceStatus.RESTORED for plan in plans)
        np.testing.assert_array_equal(output, upscale_background(photo, scale))


def test_restored_detail_lands_inside_the_face_and_overlaps_average():
    photo, faces = photo_and_faces(2, spacing=12.0)
    scale = 4
    plans = plan_faces(photo, faces, scale, RestorePolicy())
    background = upscale_background(photo, scale)
    brighter = [(plan, np.clip(round_to_uint8(np.clip(cubic_upscale(plan.crop, scale), 0, 1)).astype(int) + 20, 0, 255))
                for plan in plans]
    output = paste_faces(background, brighter, scale, RestorePolicy()).astype(int)
    lift = output - background
    assert lift.min() >= 0 and lift.max() <= 20  # overlapping +20 residuals average to +20, never add up
    eye_mid = np.rint(faces[0].landmarks[:2].mean(axis=0) * scale).astype(int)
    assert lift[eye_mid[1], eye_mid[0]].min() >= 19
    assert lift[:, -60:].max() == 0  # far from the faces


def test_policy_limits_the_number_of_faces_and_skips_small_ones_and_doubtful_detections():
    photo, faces = photo_and_faces(3)
    doubtful = [Face(face.box, 0.85, face.landmarks) for face in faces]
    assert {plan.status for plan in plan_faces(photo, doubtful, 4, RestorePolicy())} == {FaceStatus.LOW_SCORE}
    assert {plan.status for plan in plan_faces(photo, doubtful, 4, RestorePolicy(min_score=0.8))} == {FaceStatus.RESTORED}
    plans = plan_faces(photo, faces, 4, RestorePolicy(max_faces=2))
    assert [plan.status for plan in plans] == [FaceStatus.RESTORED, FaceStatus.RESTORED, FaceStatus.OVER_LIMIT]
    assert plans[2].crop is None
    plans = plan_faces(photo, faces, 4, RestorePolicy(min_inter_ocular=20))
    assert {plan.status for plan in plans} == {FaceStatus.TOO_SMALL}
    output, _ = restore_photo(photo, faces, 4, identity_run(4), RestorePolicy(min_inter_ocular=20))
    np.testing.assert_array_equal(output, upscale_background(photo, 4))


@pytest.mark.parametrize("eye_mid", [(3.0, 2.0), (97.0, 58.0)])  # frames reaching past the photo's corners
def test_faces_at_the_border_are_cut_with_replicated_edges_and_pasted_inside(eye_mid):
    photo = np.random.default_rng(4).uniform(0.2, 0.8, (60, 100, 3)).astype(np.float32)
    faces = [Face((0, 0, 1, 1), 0.9, landmarks_for(eye_mid, 11.0))]
    for whole_pixel_crops in (True, False):
        policy = RestorePolicy(whole_pixel_crops=whole_pixel_crops)
        output, plans = restore_photo(photo, faces, 4, identity_run(4), policy)
        assert plans[0].status == FaceStatus.RESTORED and plans[0].crop.shape == (32, 32, 3)
        np.testing.assert_array_equal(output, upscale_background(photo, 4))
        brighter = lambda crops: [np.clip(face.astype(int) + 30, 0, 255) for face in identity_run(4)(crops)]  # noqa: E731
        lifted = restore_photo(photo, faces, 4, brighter, policy)[0].astype(int) - upscale_background(photo, 4)
        assert lifted.shape == (240, 400, 3) and lifted.max() > 0
