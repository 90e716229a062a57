"""Geometry of whole-photo restoration: similarity alignment to the training framing, warps, bicubic.

Coordinates are continuous pixels (pixel i spans [i, i+1), its centre at i + 0.5). A transform is
a 2×3 matrix ``[[a, -b, tx], [b, a, ty]]`` mapping photo points to face-frame points.
"""

from __future__ import annotations

import numpy as np

# The Helen-like framing the models were trained on (training/configs/framing.yaml, target): eye
# midpoint, inter-ocular distance and mouth centre in a 128-px frame. Eyes are taken level.
FRAME = 128
EYE_MID = (63.4, 35.2)
INTER_OCULAR = 44.8
MOUTH = (64.9, 82.5)
TEMPLATE = np.array(
    [[EYE_MID[0] - INTER_OCULAR / 2, EYE_MID[1]], [EYE_MID[0] + INTER_OCULAR / 2, EYE_MID[1]], list(MOUTH)]
)
CUBIC_A = -0.75  # ONNX Resize's default cubic coefficient


def alignment_points(landmarks: np.ndarray) -> np.ndarray:
    """Left eye, right eye, mouth centre (mean of the corners) from five landmarks: the template's points."""
    return np.stack([landmarks[0], landmarks[1], (landmarks[3] + landmarks[4]) / 2])


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation) taking ``source`` onto ``target``."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        values += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.asarray(rows, float), np.asarray(values, float), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def invert(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -linear @ matrix[:, 2:]], axis=1)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def zoom(matrix: np.ndarray) -> float:
    """Frame pixels per photo pixel."""
    return float(np.hypot(matrix[0, 0], matrix[1, 0]))


def frame_side(landmarks: np.ndarray, side: int, multiple: int = 4) -> int:
    """The aligned frame's side for a face: the model's input ``side`` (128 / scale) for faces up to
    the training size; for larger faces, the frame that holds the face at its own size in the
    training framing (rounded up to ``multiple``). The model is fully convolutional: measured on
    held-out faces, running it on such a native frame gains as much as at the trained size
    (docs/restore.md), where shrinking the face to the model's size lost 1-2 dB.
    """
    points = alignment_points(landmarks)
    needed = side / zoom(fit_similarity(points, TEMPLATE * (side / FRAME)))
    return max(side, int(np.ceil(needed / multiple - 1e-6)) * multiple)


def face_transform(landmarks: np.ndarray, side: int, whole_pixel: bool = True) -> np.ndarray:
    """Photo → aligned frame of ``side`` pixels (``frame_side``).

    With ``whole_pixel`` the frame is a whole-pixel crop of the photo (no rotation, no
    resampling), placed so the eyes-mouth centroid falls on the template's: the models were
    trained on untouched bicubic downscales and lose 1-3 dB on resampled inputs
    (docs/restore.md). Without, the full similarity is used.
    """
    points, target = alignment_points(landmarks), TEMPLATE * (side / FRAME)
    if whole_pixel:
        shift = np.rint((target - points).mean(axis=0))
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    return fit_similarity(points, target)


def is_whole_pixel_shift(matrix: np.ndarray) -> bool:
    return bool(np.array_equal(matrix[:, :2], np.eye(2)) and np.array_equal(matrix[:, 2], np.rint(matrix[:, 2])))


def bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, outside: float | None) -> np.ndarray:
    """``image`` (H×W×C) sampled at continuous points; beyond the edge: the edge (``outside`` None) or ``outside``."""
    height, width = image.shape[:2]
    fx, fy = xs - 0.5, ys - 0.5
    x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    wx, wy = (fx - x0)[..., None], (fy - y0)[..., None]

    def at(yy, xx):
        return image[np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]

    value = (at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx) * (1 - wy) + (at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx) * wy
    if outside is not None:
        inside = (xs >= 0) & (xs <= width) & (ys >= 0) & (ys <= height)
        value = np.where(inside[..., None], value, outside)
    return value


def warp(image: np.ndarray, matrix: np.ndarray, side: int) -> np.ndarray:
    """The ``side``×``side`` frame of ``matrix`` cut from ``image`` (edges replicated).

    A whole-pixel shift is a plain crop; anything else is sampled by cubic convolution,
    box-filtered when shrinking.
    """
    if is_whole_pixel_shift(matrix):
        height, width = image.shape[:2]
        left, top = -int(matrix[0, 2]), -int(matrix[1, 2])
        rows = np.clip(np.arange(top, top + side), 0, height - 1)
        cols = np.clip(np.arange(left, left + side), 0, width - 1)
        return image[rows][:, cols].astype(np.float32)
    supersample = int(min(8, max(1, np.ceil(1.0 / zoom(matrix) - 1e-6))))
    grid = (np.arange(side * supersample) + 0.5) / supersample
    us, vs = np.meshgrid(grid, grid)
    source = apply(invert(matrix), np.stack([us.ravel(), vs.ravel()], axis=1))
    sampled = bicubic_sample(image, source[:, 0], source[:, 1]).reshape(side * supersample, side * supersample, -1)
    if supersample > 1:
        sampled = sampled.reshape(side, supersample, side, supersample, -1).mean(axis=(1, 3))
    return sampled.astype(np.float32)


def cubic_matrix(size: int, scale: int) -> np.ndarray:
    """(scale·size)×size weights of a cubic (a = -0.75) upscale, half-pixel centres, edges replicated (ONNX Resize)."""
    out = (np.arange(size * scale) + 0.5) / scale - 0.5
    base = np.floor(out).astype(np.int64)
    weights = np.zeros((size * scale, size))
    for offset in range(-1, 3):
        distance = np.abs(out - (base + offset))
        a = CUBIC_A
        w = np.where(
            distance <= 1, (a + 2) * distance**3 - (a + 3) * distance**2 + 1,
            np.where(distance < 2, a * distance**3 - 5 * a * distance**2 + 8 * a * distance - 4 * a, 0.0),
        )
        np.add.at(weights, (np.arange(size * scale), np.clip(base + offset, 0, size - 1)), w)
    return weights


def cubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """H×W×C float → sH×sW×C by separable cubic interpolation (the same as ONNX Resize mode=cubic)."""
    rows = cubic_matrix(image.shape[0], scale)
    cols = cubic_matrix(image.shape[1], scale)
    height, width, channels = image.shape
    tall = (rows @ image.astype(np.float64).reshape(height, width * channels)).reshape(-1, width, channels)
    return np.matmul(cols, tall).astype(np.float32)  # (sW×W) @ (sH, W, C) → sH×sW×C


def feather_mask(side: int, margin: float, feather: float) -> np.ndarray:
    """side×side weights: 0 within ``margin`` of the frame's edge, rising smoothly to 1 over ``feather`` pixels."""
    centres = np.arange(side) + 0.5
    distance = np.minimum(centres, side - centres)
    edge = np.minimum.outer(distance, distance)
    ramp = np.clip((edge - margin) / feather, 0.0, 1.0)
    return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)


def _cubic_weights(t: np.ndarray, a: float) -> list[np.ndarray]:
    """Weights of the four taps at offsets -1, 0, 1, 2 for fractional positions ``t``."""
    def kernel(d):
        d = np.abs(d)
        return np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                        np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    return [kernel(t - offset) for offset in (-1, 0, 1, 2)]


def bicubic_sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, a: float = -0.5) -> np.ndarray:
    """``image`` (H×W×C) sampled at continuous points by cubic convolution, edges replicated."""
    height, width = image.shape[:2]
    fx, fy = xs - 0.5, ys - 0.5
    x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    wxs, wys = _cubic_weights(fx - x0, a), _cubic_weights(fy - y0, a)
    value = 0.0
    for j, wy in zip(range(-1, 3), wys, strict=True):
        row = np.clip(y0 + j, 0, height - 1)
        for i, wx in zip(range(-1, 3), wxs, strict=True):
            value = value + image[row, np.clip(x0 + i, 0, width - 1)] * (wx * wy)[..., None]
    return value
