"""Whole photos: which faces to restore, their aligned model inputs, and the paste-back.

The model sees each face aligned to the training framing at its input size (128 / scale), as a
whole-pixel crop when the face is near that size (see face_align.face_transform). Its output
is pasted back as a *residual*: the restored face minus the same aligned input upscaled
by the cubic the identity model would give, warped back into the upscaled photo under a feathered
mask. So only what the model adds moves through the second interpolation, and a model that adds
nothing leaves the upscaled photo exactly as it was. Overlapping faces share their pixels by the
weights of their masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from service.face_align import (
    FRAME,
    INTER_OCULAR,
    apply,
    bilinear,
    cubic_upscale,
    face_transform,
    feather_mask,
    invert,
    warp,
)
from service.face_detector import Face

RESTORED, TOO_SMALL, TOO_LARGE, OVER_LIMIT, LOW_SCORE = "restored", "too_small", "too_large", "over_limit", "low_score"


@dataclass(frozen=True)
class RestorePolicy:
    min_inter_ocular: float = 2.0  # photo pixels; smaller faces stay as the upscaled photo
    # Detections scoring lower stay as the upscaled photo: a face model run on a false detection
    # paints a face where there is none. Measured (docs/restore.md): false detections on scikit-image's
    # sample photos scored 0.72-0.81; real faces from 5 px between the eyes scored 0.93 or more.
    min_score: float = 0.9
    # Zoom = the model's inter-ocular distance (44.8 / scale) over the face's. Within exact_zoom
    # the model gets the face's own pixels (a whole-pixel crop, see face_align.face_transform);
    # smaller faces (zoom above) stay as the upscaled photo. Larger faces fade out from
    # full_weight_zoom down to exact_zoom[0] and below it stay as the upscaled photo: measured on
    # composed group photos (docs/restore.md), the gain turns negative around zoom 0.5.
    exact_zoom: tuple[float, float] = (0.5, 2.5)
    full_weight_zoom: float = 0.7
    whole_pixel_crops: bool = True  # False: every face resampled by its similarity (measured worse)
    max_faces: int = 32
    feather_margin: float = 2.0  # frame pixels (of 128) left untouched at the frame's edge
    feather: float = 12.0  # frame pixels over which the mask rises to 1


@dataclass
class FacePlan:
    face: Face
    status: str
    weight: float = 0.0
    transform: np.ndarray | None = field(default=None, repr=False)  # photo → model-input frame
    crop: np.ndarray | None = field(default=None, repr=False)  # side×side×3 float32 in [0, 1]

    def to_dict(self) -> dict:
        return {**self.face.to_dict(), "inter_ocular": round(self.face.inter_ocular, 1), "status": self.status,
                "weight": round(self.weight, 3)}


def model_side(scale: int) -> int:
    return FRAME // scale


def face_weight(inter_ocular: float, scale: int, policy: RestorePolicy) -> tuple[str, float]:
    """(status, blend weight) of a face by its size against the model's input framing."""
    zoom = (INTER_OCULAR / scale) / max(inter_ocular, 1e-6)
    if inter_ocular < policy.min_inter_ocular or zoom > policy.exact_zoom[1]:
        return TOO_SMALL, 0.0
    if zoom >= policy.full_weight_zoom:
        return RESTORED, 1.0
    if zoom < policy.exact_zoom[0]:
        return TOO_LARGE, 0.0
    return RESTORED, (zoom - policy.exact_zoom[0]) / (policy.full_weight_zoom - policy.exact_zoom[0])


def plan_faces(rgb: np.ndarray, faces: list[Face], scale: int, policy: RestorePolicy) -> list[FacePlan]:
    """One plan per detected face, best score first; restorable ones carry their aligned model input."""
    side = model_side(scale)
    plans, taken = [], 0
    for face in sorted(faces, key=lambda f: -f.score):
        status, weight = face_weight(face.inter_ocular, scale, policy)
        if status == RESTORED and face.score < policy.min_score:
            status, weight = LOW_SCORE, 0.0
        if status == RESTORED and taken >= policy.max_faces:
            status, weight = OVER_LIMIT, 0.0
        if status != RESTORED:
            plans.append(FacePlan(face, status))
            continue
        taken += 1
        transform = face_transform(face.landmarks, side, policy.exact_zoom if policy.whole_pixel_crops else None)
        plans.append(FacePlan(face, status, weight, transform, np.clip(warp(rgb, transform, side), 0.0, 1.0)))
    return plans


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def upscale_background(rgb: np.ndarray, scale: int) -> np.ndarray:
    """The whole photo upscaled bicubically (Pillow), uint8: what every pixel outside the faces becomes."""
    image = Image.fromarray(to_uint8(rgb))
    return np.asarray(image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC))


def _footprint(hr_transform: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    corners = apply(invert(hr_transform), np.array([[0, 0], [FRAME, 0], [0, FRAME], [FRAME, FRAME]], float))
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
    """The upscaled photo (uint8) with each plan's restored face (uint8 128×128×3) pasted back."""
    height, width = background.shape[:2]
    mask = feather_mask(FRAME, policy.feather_margin, policy.feather)
    layers, boxes = [], []
    for plan, face in restored:
        reference = to_uint8(cubic_upscale(plan.crop, scale)).astype(np.float32)
        residual = (face.astype(np.float32) - reference) / 255.0
        hr_transform = plan.transform.copy()
        hr_transform[:, 2] *= scale  # same rotation and zoom; translation in upscaled pixels
        box = _footprint(hr_transform, width, height)
        if box is not None:
            layers.append((hr_transform, residual, mask * plan.weight))
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
        output[y0:y1, x0:x1] = to_uint8(region)
    return output


def restore_photo(rgb: np.ndarray, faces: list[Face], scale: int, run_model: Callable[[np.ndarray], list[np.ndarray]],
                  policy: RestorePolicy | None = None) -> tuple[np.ndarray, list[FacePlan]]:
    """In-process restoration: ``run_model`` maps N×side×side×3 float crops to N restored uint8 faces."""
    policy = policy or RestorePolicy()
    plans = plan_faces(rgb, faces, scale, policy)
    todo = [plan for plan in plans if plan.crop is not None]
    background = upscale_background(rgb, scale)
    if not todo:
        return background, plans
    restored = run_model(np.stack([plan.crop for plan in todo]))
    return paste_faces(background, list(zip(todo, restored, strict=True)), scale, policy), plans
