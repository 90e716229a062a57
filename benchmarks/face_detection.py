"""Recall and landmark error of the face detector on small faces that are not Helen-50.

Faces with annotated 5-point landmarks (SCUT-FBP5500, All-Age-Faces: ``landmarks.json`` of
``../shared/data``) are shrunk so their inter-ocular distance is 5…22 px and placed, several per
picture, on a textured background. A face counts as found when a detection's eye midpoint lies
within 0.5 inter-ocular distances of the annotated one; its landmark error is the mean distance of
its five points to the annotation, divided by the inter-ocular distance (NME).

    python -m benchmarks.face_detection --faces 40 --data ../shared/data

``--detector haar`` and ``--detector dlib`` run the same pictures through OpenCV's Haar cascade and
dlib's HOG detector with its 5-point shape predictor instead of the service's MTCNN. They are
benchmark-time packages only (the ``detector-bench`` extra: ``opencv-python-headless<5``, as OpenCV 5
has no ``CascadeClassifier``, ``dlib-bin``, ``face-recognition-models``); the service never imports them.
Haar gives boxes only: a face counts as found when an unmatched box contains both annotated eyes and
is at most ``BOX_MAX_INTER_OCULAR`` inter-ocular distances wide, and there is no NME. dlib's points
are two corners per eye and the base of the nose: the eye centres are the means of the corners and
its NME is over eyes and nose only (three points, the nose base against the annotated nose tip).
``--points 2`` (eyes) or ``3`` (eyes and nose) restricts any detector's NME to the first points;
``--match box`` scores MTCNN or dlib by the Haar rule.

``--negatives WHEEL`` instead runs the detector on the sample photos inside a scikit-image wheel
(``pip download --no-deps scikit-image==0.26.0``; two of them show a face) at full, half and
quarter size, and prints the scores of what it finds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from portraitsr.runtimes import RuntimeRequest
from service.faces.detector import DEFAULT_RUNTIME, DetectorSettings, FaceDetector

SOURCES = ("scut-fbp5500", "aaf-crops")
INTER_OCULAR = (3, 4, 5, 6, 7, 8, 10, 12, 14, 18, 22)
PER_ROW = 4
BOX_MAX_INTER_OCULAR = 5.0  # box-rule matches: a box wider than this many eye distances claims no face
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Detection:
    """A face from another detector, scored like the service's ``Face``."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray | None = None  # k×2 in the annotation's order (left eye, right eye, nose…); None: box only


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (boxes, no landmarks) on the grey picture.

    ``upsample`` doubles the picture that many times first (bilinear): the cascade's smallest window
    is 24×24 px. The score is the number of merged neighbour windows.
    """

    def __init__(self, upsample: int = 0, cascade: str = HAAR_CASCADE, scale_factor: float = 1.1, min_neighbors: int = 3):
        import cv2

        cv2.setNumThreads(1)
        self.cv2, self.upsample, self.factor = cv2, upsample, 2 ** upsample
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.classifier = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / cascade))
        if self.classifier.empty():
            raise FileNotFoundError(f"no Haar cascade {cascade} in {cv2.data.haarcascades}")

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        cv2 = self.cv2
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        if self.factor > 1:
            grey = cv2.resize(grey, None, fx=self.factor, fy=self.factor, interpolation=cv2.INTER_LINEAR)
        boxes, neighbours = self.classifier.detectMultiScale2(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors)
        return [Detection(tuple(float(v) / self.factor for v in (x, y, x + w, y + h)), float(n))
                for (x, y, w, h), n in zip(boxes, np.ravel(neighbours), strict=True)]


def dlib_five_point_model() -> Path:
    """``face_recognition_models``' 5-point predictor file.

    The package's own ``pose_predictor_five_point_model_location()`` needs ``pkg_resources``, which
    setuptools 81 and later no longer have; the file is then found next to the package instead.
    """
    try:
        import face_recognition_models

        return Path(face_recognition_models.pose_predictor_five_point_model_location())
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise
        return Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_5_face_landmarks.dat"


class DlibDetector:
    """dlib's HOG frontal-face detector (``upsample`` pyramid-up steps) and its 5-point shape predictor.

    dlib's five parts (integer pixels) are: 0, 1 the outer and inner corners of the eye with the
    larger x, 2, 3 those of the eye with the smaller x, 4 the base of the nose. The landmarks
    returned are the annotation's first three: smaller-x eye, larger-x eye (each the mean of its
    two corners) and the nose base. The predictor runs on the picture itself, as dlib's examples do.
    """

    def __init__(self, upsample: int = 1, model: Path | None = None):
        import dlib

        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(model or dlib_five_point_model()))

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        rects, scores, _ = self.detector.run(rgb, self.upsample, 0.0)
        faces = []
        for rect, face_score in zip(rects, scores, strict=True):
            shape = self.predictor(rgb, rect)
            parts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
            faces.append(Detection((float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1)),
                                   float(face_score), dlib_landmarks(parts)))
        return faces


def dlib_landmarks(parts: np.ndarray) -> np.ndarray:
    """dlib's 5 parts (larger-x eye corners, smaller-x eye corners, nose base) as left eye, right eye, nose."""
    return np.stack([parts[2:4].mean(axis=0), parts[0:2].mean(axis=0), parts[4]])


def make_detector(name: str, upsample: int | None = None, min_face_px: float = DetectorSettings.min_face_px,
                  cascade: str = HAAR_CASCADE, runtime: RuntimeRequest = DEFAULT_RUNTIME):
    if name == "haar":
        return HaarDetector(upsample=0 if upsample is None else upsample, cascade=cascade)
    if name == "dlib":
        return DlibDetector(upsample=1 if upsample is None else upsample)
    if name == "mtcnn":
        return FaceDetector(settings=DetectorSettings(min_face_px=min_face_px), runtime=runtime)
    raise ValueError(f"unknown detector {name!r}")


def load_faces(data: Path, count: int, seed: int) -> list[tuple[Image.Image, np.ndarray]]:
    rng = np.random.default_rng(seed)
    faces = []
    for source in SOURCES:
        landmarks = json.loads((data / source / "landmarks.json").read_text())
        names = sorted(landmarks)
        for index in rng.choice(len(names), count // len(SOURCES), replace=False):
            name = names[index]
            path = data / source / "images" / (name if Path(name).suffix else f"{name}.jpg")
            faces.append((Image.open(path).convert("RGB"), np.asarray(landmarks[name], dtype=np.float64)))
    return faces


def background(height: int, width: int, seed: int) -> Image.Image:
    """Smooth colour gradients plus blotches and noise: not a flat field, no faces."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [0.45 + 0.25 * np.sin(5 * xx * (c + 1) + rng.uniform(0, 6)) * np.cos(4 * yy + c) for c in range(3)]
    array = np.stack(planes, axis=2) + rng.normal(0, 0.04, (height, width, 3))
    return Image.fromarray(np.clip(array * 255, 0, 255).astype(np.uint8))


def compose(faces, inter_ocular: float, seed: int, margin: int = 8,
            jitter: bool = True) -> tuple[Image.Image, list[np.ndarray]]:
    """The faces shrunk to ``inter_ocular`` and laid out PER_ROW to a row (each moved at random
    within its cell when ``jitter``) on a face-free background; their landmarks in the picture."""
    tiles = []
    for image, points in faces:
        scale = inter_ocular / np.linalg.norm(points[1] - points[0])
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        tiles.append((image.resize(size, Image.Resampling.LANCZOS), points * np.array(size) / np.array(image.size)))
    cell = max(max(t.width, t.height) for t, _ in tiles) + margin
    rows = -(-len(tiles) // PER_ROW)
    canvas = background(rows * cell + 2 * margin, PER_ROW * cell + 2 * margin, seed)
    rng = np.random.default_rng(seed)
    truths = []
    for k, (tile, points) in enumerate(tiles):
        x = margin + (k % PER_ROW) * cell + (int(rng.integers(0, cell - tile.width + 1)) if jitter else 0)
        y = margin + (k // PER_ROW) * cell + (int(rng.integers(0, cell - tile.height + 1)) if jitter else 0)
        canvas.paste(tile, (x, y))
        truths.append(points + [x, y])
    return canvas, truths


def box_holds_eyes(box, truth: np.ndarray, inter_ocular: float) -> bool:
    x1, y1, x2, y2 = box
    inside = all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in truth[:2])
    return inside and x2 - x1 <= BOX_MAX_INTER_OCULAR * inter_ocular


def score(detected, truths, points: int | None = None, match: str = "landmarks") -> tuple[int, list[float], list[np.ndarray], int]:
    """Found faces, their NMEs, their signed mean landmark offsets, and unmatched detections.

    ``match="landmarks"``: the detection's eye midpoint within 0.5 inter-ocular distances of the
    annotated one. ``match="box"`` (and any detection without landmarks): its box holds both annotated
    eyes (``box_holds_eyes``), nearest box centre first. NME and offsets are over the first
    ``points`` landmarks (all the detector gives by default) and only for detections with landmarks.
    """
    used, found, errors, offsets = set(), 0, [], []
    for truth in truths:
        io = np.linalg.norm(truth[1] - truth[0])
        middle = (truth[0] + truth[1]) / 2
        best, best_distance = None, np.inf
        for k, face in enumerate(detected):
            if k in used:
                continue
            if match == "box" or face.landmarks is None:
                if not box_holds_eyes(face.box, truth, io):
                    continue
                distance = np.linalg.norm((np.asarray(face.box[:2]) + face.box[2:]) / 2 - middle)
            else:
                distance = np.linalg.norm((face.landmarks[0] + face.landmarks[1]) / 2 - middle)
                if distance >= 0.5 * io:
                    continue
            if distance < best_distance:
                best, best_distance = k, distance
        if best is not None:
            used.add(best)
            found += 1
            landmarks = detected[best].landmarks
            if landmarks is not None:
                n = len(landmarks) if points is None else min(points, len(landmarks))
                difference = landmarks[:n] - truth[:n]
                errors.append(float(np.linalg.norm(difference, axis=1).mean() / io))
                offsets.append(difference.mean(axis=0))
    return found, errors, offsets, len(detected) - len(used)


def negatives(wheel: Path, detector) -> int:
    import io
    import zipfile

    print("| sample photo | size | scores at 1, 1/2, 1/4 |")
    print("|---|---|---|")
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not (name.startswith("skimage/data/") and name.lower().endswith((".png", ".jpg"))):
                continue
            try:
                image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            except OSError:
                continue
            if min(image.size) < 64:
                continue
            found = []
            for factor in (1, 2, 4):
                small = image.resize((image.width // factor, image.height // factor), Image.Resampling.BICUBIC)
                found.append(", ".join(f"{face.score:.2f}" for face in detector.detect(np.asarray(small))) or "-")
            print(f"| {Path(name).name} | {image.width}×{image.height} | {' / '.join(found)} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--faces", type=int, default=40, help="faces per size (half from each source)")
    parser.add_argument("--detector", choices=("mtcnn", "haar", "dlib"), default="mtcnn",
                        help="mtcnn: the service's; haar, dlib: benchmark-only packages (see the module docstring)")
    parser.add_argument("--min-face-px", type=float, default=DetectorSettings.min_face_px, help="mtcnn only")
    parser.add_argument("--upsample", type=int, default=None,
                        help="haar: picture doublings before the cascade (default 0); dlib: detector pyramid-up steps (default 1)")
    parser.add_argument("--cascade", default=HAAR_CASCADE, help="haar only: a cascade file of cv2.data.haarcascades")
    parser.add_argument("--points", type=int, default=None, help="NME over the first POINTS landmarks only (2: eyes)")
    parser.add_argument("--match", choices=("landmarks", "box"), default="landmarks",
                        help="how a detection finds its face (haar always uses box)")
    parser.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default="auto", help="mtcnn only")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=DEFAULT_RUNTIME.precision, help="mtcnn only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", type=Path, default=None, metavar="WHEEL", help="scikit-image wheel: false detections")
    args = parser.parse_args(argv)
    runtime = RuntimeRequest(args.runtime, args.precision, "cpu", threads=1)
    detector = make_detector(args.detector, args.upsample, args.min_face_px, args.cascade, runtime)
    if args.negatives:
        return negatives(args.negatives, detector)
    faces = load_faces(args.data, args.faces, args.seed)
    if args.detector == "mtcnn":
        setting = f"min_face_px {args.min_face_px}, {args.runtime} {args.precision}"
    else:
        setting = f"detector {args.detector}, upsample {detector.upsample}" + (f", {args.cascade}" if args.detector == "haar" else "")
    if args.points is not None or args.match != "landmarks":
        setting += f"; NME over {args.points or 'all'} points, match {args.match}"
    print(f"{len(faces)} faces from {', '.join(SOURCES)}; {setting}")
    print("| inter-ocular px | recall | NME (mean) | NME (median) | mean offset x, y (px) | false detections | ms per picture |")
    print("|---|---|---|---|---|---|---|")
    for inter_ocular in INTER_OCULAR:
        found, errors, offsets, false, seconds, pictures = 0, [], [], 0, 0.0, 0
        for start in range(0, len(faces), 2 * PER_ROW):
            canvas, truths = compose(faces[start:start + 2 * PER_ROW], inter_ocular, args.seed + start)
            began = time.perf_counter()
            detected = detector.detect(np.asarray(canvas))
            seconds += time.perf_counter() - began
            pictures += 1
            n, e, o, f = score(detected, truths, args.points, args.match)
            found, false = found + n, false + f
            errors += e
            offsets += o
        if errors:
            offset = np.mean(offsets, axis=0)
            nme = f"{np.mean(errors):.3f} | {np.median(errors):.3f} | {offset[0]:+.2f}, {offset[1]:+.2f}"
        else:
            nme = "n/a | n/a | n/a" if args.detector == "haar" else "nan | nan | +nan, +nan"
        print(f"| {inter_ocular} | {found}/{len(faces)} = {found / len(faces):.0%} | {nme} | {false} "
              f"| {1000 * seconds / pictures:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
