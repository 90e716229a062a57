"""Whole photos: which faces to restore, their aligned model inputs, and the paste-back.

The model sees each face as a whole-pixel crop placed by the training framing: at its input size
(128 / scale) for faces up to the trained size, and in a frame as much larger as the face is for
larger faces (face_align.frame_side), so every face keeps its own pixels. Its output
is pasted back as a *residual*: the restored face minus the same aligned input upscaled
by the cubic the identity model would give, warped back into the upscaled photo under a feathered
mask. So only what the model adds moves through the second interpolation, and a model that adds
nothing leaves the upscaled photo exactly as it was. Overlapping faces share their pixels by the
weights of their masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from PIL import Image

from portraitsr.release import round_to_uint8
from service.core.settings import ServiceSettings
from service.faces.alignment import (
    FRAME,
    INTER_OCULAR,
    apply,
    bilinear,
    cubic_upscale,
    face_transform,
    feather_mask,
    frame_side,
    invert,
    warp,
)
from service.faces.detector import Face


class FaceStatus(StrEnum):
    """What becomes of a detected face (reported per face by ``/restore?report=json`` and ``X-Face-Boxes``)."""

    RESTORED = "restored"
    TOO_SMALL = "too_small"  # stays as the upscaled photo
    TOO_LARGE = "too_large"  # stays as the upscaled photo (sharp enough there)
    OVER_LIMIT = "over_limit"  # past max_faces
    LOW_SCORE = "low_score"  # a doubtful detection


def _setting(name: str):
    """The default of a service setting: one number for the API, the command line and library callers."""
    return ServiceSettings.model_fields[name].default


@dataclass(frozen=True)
class RestorePolicy:
    min_inter_ocular: float = _setting("restore_min_inter_ocular")  # photo pixels; smaller faces stay as they are
    # Detections scoring lower stay as the upscaled photo: a face model run on a false detection
    # paints a face where there is none. Measured (docs/restore.md): false detections on scikit-image's
    # sample photos scored 0.72-0.81; real faces from 5 px between the eyes scored 0.93 or more.
    min_score: float = _setting("restore_min_score")
    # Zoom = the model's inter-ocular distance (44.8 / scale) over the face's. Faces smaller than
    # the trained size by more than max_zoom stay as the upscaled photo.
    max_zoom: float = 2.5
    # Larger faces get a frame of their own size (face_align.frame_side), up to this many times
    # the model's input side (128 px of photo at ×4, 64 at ×8: model time grows with the frame's
    # area); still larger faces stay as the upscaled photo, which is sharp enough there.
    max_frame_factor: int = 4
    whole_pixel_crops: bool = True  # False: every face resampled by its similarity (measured worse)
    max_faces: int = _setting("restore_max_faces")
    feather_margin: float = 2.0  # pixels per 128 of the frame left untouched at the frame's edge
    feather: float = 12.0  # pixels per 128 of the frame over which the mask rises to 1


@dataclass
class FacePlan:
    face: Face
    status: FaceStatus
    transform: np.ndarray | None = field(default=None, repr=False)  # photo → model-input frame
    crop: np.ndarray | None = field(default=None, repr=False)  # side×side×3 float32 in [0, 1]

    def to_dict(self) -> dict:
        side = None if self.crop is None else int(self.crop.shape[0])
        return {**self.face.to_dict(), "inter_ocular": round(self.face.inter_ocular, 1), "status": self.status.value,
                "frame": side}


def model_side(scale: int) -> int:
    return FRAME // scale


def face_status(face: Face, scale: int, policy: RestorePolicy) -> tuple[FaceStatus, int]:
    """(status, side of the model's input frame) of a face by its size against the training framing."""
    side = model_side(scale)
    zoom = (INTER_OCULAR / scale) / max(face.inter_ocular, 1e-6)
    if face.inter_ocular < policy.min_inter_ocular or zoom > policy.max_zoom:
        return FaceStatus.TOO_SMALL, 0
    frame = frame_side(face.landmarks, side)
    if frame > policy.max_frame_factor * side:
        return FaceStatus.TOO_LARGE, 0
    return FaceStatus.RESTORED, frame


def plan_faces(rgb: np.ndarray, faces: list[Face], scale: int, policy: RestorePolicy) -> list[FacePlan]:
    """One plan per detected face, best score first; restorable ones carry their aligned model input."""
    plans, taken = [], 0
    for face in sorted(faces, key=lambda f: -f.score):
        status, side = face_status(face, scale, policy)
        if status == FaceStatus.RESTORED and face.score < policy.min_score:
            status = FaceStatus.LOW_SCORE
        if status == FaceStatus.RESTORED and taken >= policy.max_faces:
            status = FaceStatus.OVER_LIMIT
        if status != FaceStatus.RESTORED:
            plans.append(FacePlan(face, status))
            continue
        taken += 1
        transform = face_transform(face.landmarks, side, policy.whole_pixel_crops)
        plans.append(FacePlan(face, status, transform, np.clip(warp(rgb, transform, side), 0.0, 1.0)))
    return plans


def upscale_background(rgb: np.ndarray, scale: int) -> np.ndarray:
    """The whole photo upscaled bicubically (Pillow), uint8: what every pixel outside the faces becomes."""
    image = Image.fromarray(round_to_uint8(rgb))
    return np.asarray(image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC))


def _footprint(hr_transform: np.ndarray, side: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    corners = apply(invert(hr_transform), np.array([[0, 0], [side, 0], [0, side], [side, side]], float))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clusters(boxes: list[tuple[int, int, int, int]]) -> list[tuple[tuple[int, int, int, int], list[int]]]:
    """Overlapping footprints merged: (union box, member indices)."""
    clusters = [(box, [k]) for k, box in enumerate(boxes)]
    merged = True
    while merged:
        merged = False
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                if _overlap(clusters[i][0], clusters[j][0]):
                    (a, ma), (b, mb) = clusters[i], clusters[j]
                    union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    clusters[i] = (union, ma + mb)
                    del clusters[j]
                    merged = True
                    break
            if merged:
                break
    return clusters


def paste_faces(background: np.ndarray, restored: list[tuple[FacePlan, np.ndarray]], scale: int,
                policy: RestorePolicy) -> np.ndarray:
    """The upscaled photo (uint8) with each plan's restored face (uint8, its frame × scale) pasted back."""
    height, width = background.shape[:2]
    layers, boxes = [], []
    for plan, face in restored:
        reference = round_to_uint8(cubic_upscale(plan.crop, scale)).astype(np.float32)
        residual = face.astype(np.float32) - reference
        # ±1 level is rounding, not detail: the model's cubic (ONNX Resize) and this one agree to
        # 1e-5, but a value on a .5 tie rounds either way. Without this an identity model would
        # move a pixel or two of a large frame by one level.
        residual[np.abs(residual) <= 1.0] = 0.0
        residual /= 255.0
        side = residual.shape[0]
        hr_transform = plan.transform.copy()
        hr_transform[:, 2] *= scale  # same rotation and zoom; translation in upscaled pixels
        box = _footprint(hr_transform, side, width, height)
        if box is not None:
            per_frame = side / FRAME
            layers.append((hr_transform, residual, feather_mask(side, policy.feather_margin * per_frame,
                                                                 policy.feather * per_frame)))
            boxes.append(box)
    output = background.copy()
    for (x0, y0, x1, y1), members in _clusters(boxes):
        total = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        weights = np.zeros((y1 - y0, x1 - x0, 1), np.float32)
        for k in members:
            hr_transform, residual, face_mask = layers[k]
            bx0, by0, bx1, by1 = boxes[k]
            ys, xs = np.mgrid[by0:by1, bx0:bx1].astype(np.float32) + 0.5
            frame = apply(hr_transform.astype(np.float32), np.stack([xs.ravel(), ys.ravel()], axis=1))
            shape = (by1 - by0, bx1 - bx0)
            alpha = bilinear(face_mask[..., None], frame[:, 0], frame[:, 1], 0.0).reshape(*shape, 1)
            detail = bilinear(residual, frame[:, 0], frame[:, 1], 0.0).reshape(*shape, 3)
            total[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] += alpha * detail
            weights[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] += alpha
        region = background[y0:y1, x0:x1].astype(np.float32) / 255.0 + total / np.maximum(weights, 1.0)
        output[y0:y1, x0:x1] = round_to_uint8(region)
    return output


def restore_photo(rgb: np.ndarray, faces: list[Face], scale: int, run_model: Callable[[np.ndarray], list[np.ndarray]],
                  policy: RestorePolicy | None = None) -> tuple[np.ndarray, list[FacePlan]]:
    """In-process restoration: ``run_model`` maps N×side×side×3 float crops (one side per call) to N
    restored uint8 faces."""
    policy = policy or RestorePolicy()
    plans = plan_faces(rgb, faces, scale, policy)
    todo = [plan for plan in plans if plan.crop is not None]
    background = upscale_background(rgb, scale)
    if not todo:
        return background, plans
    restored: dict[int, np.ndarray] = {}
    for side in sorted({plan.crop.shape[0] for plan in todo}):  # one model run per frame size
        group = [k for k, plan in enumerate(todo) if plan.crop.shape[0] == side]
        restored.update(zip(group, run_model(np.stack([todo[k].crop for k in group])), strict=True))
    return paste_faces(background, [(plan, restored[k]) for k, plan in enumerate(todo)], scale, policy), plans
