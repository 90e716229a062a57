"""Measure where eyes and mouth sit in parsing maps, to check the framing independently.

The CelebAMask-HQ masks give eye (ids 4, 5) and mouth (ids 10–12) regions; their centroids
are compared with the benchmark's landmark statistics (mediapipe iris / inner-lip centres).
Compact maps (mask-derived or predicted) have one ``eyes`` class, split at its mean x.
"""

from __future__ import annotations

import numpy as np

from training.data.parsing import CELEBAMASK_EYES, CELEBAMASK_MOUTH, COMPACT_CLASSES

_COMPACT_EYES = COMPACT_CLASSES.index("eyes")
_COMPACT_MOUTH = COMPACT_CLASSES.index("mouth")
_MIN_PIXELS = 3


def _centroid(selected: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(selected)
    if len(xs) < _MIN_PIXELS:
        return None
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])  # pixel centres, continuous coordinates


def _landmarks(eye_a: np.ndarray | None, eye_b: np.ndarray | None, mouth: np.ndarray | None) -> np.ndarray | None:
    if eye_a is None or eye_b is None or mouth is None:
        return None
    left, right = sorted((eye_a, eye_b), key=lambda point: point[0])
    return np.concatenate([left, right, mouth])


def celebamask_landmarks(mask: np.ndarray) -> np.ndarray | None:
    """Raw CelebAMask-HQ id mask -> [left eye x, y, right eye x, y, mouth x, y] or None."""
    return _landmarks(
        _centroid(mask == CELEBAMASK_EYES[0]),
        _centroid(mask == CELEBAMASK_EYES[1]),
        _centroid(np.isin(mask, CELEBAMASK_MOUTH)),
    )


def compact_landmarks(parsing: np.ndarray) -> np.ndarray | None:
    """Compact id map -> [left eye x, y, right eye x, y, mouth x, y] or None."""
    eyes = parsing == _COMPACT_EYES
    ys, xs = np.nonzero(eyes)
    if len(xs) < 2 * _MIN_PIXELS:
        return None
    split = xs.mean() + 0.5
    columns = np.arange(parsing.shape[1])[None, :] + 0.5
    return _landmarks(
        _centroid(eyes & (columns < split)),
        _centroid(eyes & (columns >= split)),
        _centroid(parsing == _COMPACT_MOUTH),
    )


def summarize_landmarks(landmarks: list[np.ndarray], frame_scale: float = 1.0) -> dict:
    """Mean eye midpoint, inter-ocular distance (± std) and mouth centre, times ``frame_scale``
    (e.g. 128 / mask width to express them in a 128-px frame of the whole image)."""
    if not landmarks:
        return {"images": 0}
    points = np.stack(landmarks) * frame_scale
    eye_mid = (points[:, 0:2] + points[:, 2:4]) / 2
    inter_ocular = np.linalg.norm(points[:, 2:4] - points[:, 0:2], axis=1)
    return {
        "images": len(points),
        "eye_mid": [round(float(v), 1) for v in eye_mid.mean(0)],
        "inter_ocular": round(float(inter_ocular.mean()), 1),
        "inter_ocular_std": round(float(inter_ocular.std()), 1),
        "mouth": [round(float(v), 1) for v in points[:, 4:6].mean(0)],
    }
