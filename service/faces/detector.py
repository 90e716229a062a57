"""Faces and their five landmarks in a photo: the MTCNN cascade in numpy on the chosen runtime (no torch).

P-Net proposes 12×12 windows over an image pyramid, R-Net (24×24) and O-Net (48×48) refine them;
O-Net also gives the landmarks (eyes, nose, mouth corners). The cascade follows facenet-pytorch's
``detect_face`` (same pyramid, thresholds, regressions and NMS); the nets are the ONNX files of
``model/face_detector`` (``training/face_detector_export.py`` makes them from the MIT weights).

Coordinates are continuous pixels of the input (pixel i spans [i, i+1)).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from portraitsr.release import round_to_uint8
from portraitsr.runtimes import RuntimeRequest, open_session
from service.core.settings import ServiceSettings

DEFAULT_DETECTOR_DIR = Path(__file__).resolve().parents[2] / "model" / "face_detector"
PNET_CELL = 12
PNET_STRIDE = 2
# Shift from the reference's landmark coordinates to ours. Measured (docs/restore.md): they sit
# +1.05, +0.85 px (raw +0.5) from SCUT/AAF annotations and +0.0…+0.5 px from drawn eyes; the
# reference's own convention (no shift) is the middle ground.
PIXEL_CENTRE = 0.0
# The detector runs in the API process, on its CPU, one thread per photo: the runtime and
# precision follow the settings (portraitsr.runtimes: auto is OpenVINO bf16 on CPUs with bf16).
DEFAULT_RUNTIME = RuntimeRequest(device="cpu", threads=1)


@dataclass(frozen=True)
class DetectorSettings:
    # The smallest face box searched for (the pyramid upsamples below 12 px): the service's setting.
    min_face_px: float = ServiceSettings.model_fields["detector_min_face_px"].default
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    pyramid_factor: float = 0.709
    max_side: int = 2048  # larger photos are searched at a reduced size


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray = field(repr=False)  # 5×2 (x, y): left eye, right eye, nose, mouth left, mouth right

    @property
    def inter_ocular(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (MTCNN's +1 box areas), best score first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[-1], order[:-1]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        overlap = inter / (np.minimum(area[best], area[rest]) if method == "min" else area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square around their centre (MTCNN's ``rerec``)."""
    boxes = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    boxes[:, 0] += width * 0.5 - side * 0.5
    boxes[:, 1] += height * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by the nets' offsets (fractions of the +1 box size)."""
    boxes = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0:4] += offsets * np.stack([width, height, width, height], axis=1)
    return boxes


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 H×W×3 → float32 h×w×3; box filter when shrinking (the reference's area mode), bilinear when growing."""
    src_h, src_w = image.shape[:2]
    method = Image.Resampling.BOX if height <= src_h and width <= src_w else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), method), dtype=np.float32)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """N×h×w×3 float pixels → N×3×h×w network input."""
    return np.ascontiguousarray(((pixels - 127.5) * 0.0078125).transpose(0, 3, 1, 2), dtype=np.float32)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class FaceDetector:
    def __init__(self, model_dir: Path = DEFAULT_DETECTOR_DIR, settings: DetectorSettings | None = None,
                 runtime: RuntimeRequest = DEFAULT_RUNTIME, max_parallel: int | None = None):
        self.settings = settings or DetectorSettings()
        self.sessions = {
            name: open_session(Path(model_dir) / f"mtcnn-{name}.onnx", runtime) for name in ("pnet", "rnet", "onet")
        }
        # At most one photo per core is searched at once (one thread each): more only adds memory,
        # the buffers of every search in flight, which the API's 40-thread pool would otherwise reach.
        self.max_parallel = max_parallel or usable_cores()
        self._slots = threading.BoundedSemaphore(self.max_parallel)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an H×W×3 image (uint8, or float in [0, 1]), best score first."""
        with self._slots:
            return self._detect(rgb)

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        image = rgb if rgb.dtype == np.uint8 else round_to_uint8(rgb)
        height, width = image.shape[:2]
        shrink = min(1.0, self.settings.max_side / max(height, width))
        if shrink < 1.0:
            image = resize(image, round(height * shrink), round(width * shrink)).astype(np.uint8)
        faces = self._cascade(np.ascontiguousarray(image))
        if shrink == 1.0:
            return faces
        return [Face(tuple(v / shrink for v in f.box), f.score, f.landmarks / shrink) for f in faces]

    # -- the three stages -------------------------------------------------------------------
    def _pyramid(self, height: int, width: int) -> list[float]:
        scale = PNET_CELL / self.settings.min_face_px
        shortest = min(height, width) * scale
        scales = []
        while shortest >= PNET_CELL:
            scales.append(scale)
            scale *= self.settings.pyramid_factor
            shortest *= self.settings.pyramid_factor
        return scales

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        found = []
        for scale in self._pyramid(height, width):
            scaled = resize(image, int(height * scale + 1), int(width * scale + 1))
            offsets, probs = self.sessions["pnet"].run(normalise(scaled[None]))
            ys, xs = np.nonzero(probs[0, 1] >= self.settings.thresholds[0])
            if len(ys) == 0:
                continue
            corner = np.stack([xs, ys], axis=1).astype(np.float32)
            top_left = np.floor((PNET_STRIDE * corner + 1) / scale)
            bottom_right = np.floor((PNET_STRIDE * corner + PNET_CELL) / scale)
            boxes = np.concatenate(
                [top_left, bottom_right, probs[0, 1, ys, xs][:, None], offsets[0][:, ys, xs].T], axis=1
            )
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        width_, height_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, 0:4] + boxes[:, 5:9] * np.stack([width_, height_, width_, height_], axis=1)
        return square(np.concatenate([moved, boxes[:, 4:5]], axis=1))

    def _crops(self, image: np.ndarray, boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes' pixels (clipped to the image, as the reference does) resized to side×side."""
        height, width = image.shape[:2]
        corners = np.trunc(boxes[:, :4]).astype(np.int64)
        x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
        x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
        valid = (x2 > x1 - 1) & (y2 > y1 - 1)
        crops = [resize(image[y1[k] - 1:y2[k], x1[k] - 1:x2[k]], side, side) for k in np.nonzero(valid)[0]]
        return (np.stack(crops) if crops else np.zeros((0, side, side, 3), np.float32)), valid

    def _cascade(self, image: np.ndarray) -> list[Face]:
        thresholds = self.settings.thresholds
        boxes = self._proposals(image)
        if len(boxes) == 0:
            return []
        crops, valid = self._crops(image, boxes, 24)
        boxes = boxes[valid]
        if len(boxes) == 0:
            return []
        offsets, probs = self.sessions["rnet"].run(normalise(crops))
        passed = probs[:, 1] > thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
        offsets = offsets[passed]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = square(regress(boxes[keep], offsets[keep]))
        if len(boxes) == 0:
            return []
        crops, valid = self._crops(image, boxes, 48)
        boxes = boxes[valid]
        if len(boxes) == 0:
            return []
        offsets, points, probs = self.sessions["onet"].run(normalise(crops))
        passed = probs[:, 1] > thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
        offsets, points = offsets[passed], points[passed]
        side_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        side_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = side_w * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = side_h * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2) + PIXEL_CENTRE
        boxes = regress(boxes, offsets)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        faces = []
        for k in keep:
            x1, y1, x2, y2 = (float(v) for v in boxes[k, :4])
            faces.append(Face((x1 - 1, y1 - 1, x2, y2), float(boxes[k, 4]), landmarks[k].astype(np.float64)))
        return faces


class LazyDetector:
    """One :class:`FaceDetector` per API process, its sessions made on first use (not at import or
    start-up, so an API that never gets a photo never loads them), once, from any thread."""

    def __init__(self, settings: DetectorSettings | None = None, model_dir: Path = DEFAULT_DETECTOR_DIR,
                 runtime: RuntimeRequest = DEFAULT_RUNTIME):
        self.settings = settings
        self.model_dir = model_dir
        self.runtime = runtime
        self.detector: FaceDetector | None = None
        self.lock = threading.Lock()

    def get(self) -> FaceDetector:
        with self.lock:
            if self.detector is None:
                self.detector = FaceDetector(self.model_dir, self.settings, self.runtime)
            return self.detector
