"""Recall and landmark error of the face detector on small faces that are not Helen-50.

Faces with annotated 5-point landmarks (SCUT-FBP5500, All-Age-Faces: ``landmarks.json`` of
``../shared/data``) are shrunk so their inter-ocular distance is 5…22 px and placed, several per
picture, on a textured background. A face counts as found when a detection's eye midpoint lies
within 0.5 inter-ocular distances of the annotated one; its landmark error is the mean distance of
its five points to the annotation, divided by the inter-ocular distance (NME).

    python -m benchmarks.face_detection --faces 40 --data ../shared/data

``--negatives WHEEL`` instead runs the detector on the sample photos inside a scikit-image wheel
(``pip download --no-deps scikit-image==0.26.0``; two of them show a face) at full, half and
quarter size, and prints the scores of what it finds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from service.face_detector import DetectorSettings, FaceDetector

SOURCES = ("scut-fbp5500", "aaf-crops")
INTER_OCULAR = (3, 4, 5, 6, 7, 8, 10, 12, 14, 18, 22)
PER_ROW = 4


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


def compose(faces, inter_ocular: float, seed: int) -> tuple[Image.Image, list[np.ndarray]]:
    """The faces shrunk to ``inter_ocular`` and laid out on a grid with jitter; their landmarks in the picture."""
    tiles = []
    for image, points in faces:
        scale = inter_ocular / np.linalg.norm(points[1] - points[0])
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        tiles.append((image.resize(size, Image.Resampling.LANCZOS), points * np.array(size) / np.array(image.size)))
    cell = max(max(t.width, t.height) for t, _ in tiles) + 8
    rows = -(-len(tiles) // PER_ROW)
    canvas = background(rows * cell + 16, PER_ROW * cell + 16, seed)
    rng = np.random.default_rng(seed)
    truths = []
    for k, (tile, points) in enumerate(tiles):
        x = 8 + (k % PER_ROW) * cell + int(rng.integers(0, cell - tile.width + 1))
        y = 8 + (k // PER_ROW) * cell + int(rng.integers(0, cell - tile.height + 1))
        canvas.paste(tile, (x, y))
        truths.append(points + [x, y])
    return canvas, truths


def score(detected, truths) -> tuple[int, list[float], list[np.ndarray], int]:
    """Found faces, their NMEs, their signed mean landmark offsets, and unmatched detections."""
    used, errors, offsets = set(), [], []
    for truth in truths:
        io = np.linalg.norm(truth[1] - truth[0])
        middle = (truth[0] + truth[1]) / 2
        best, best_distance = None, 0.5 * io
        for k, face in enumerate(detected):
            distance = np.linalg.norm((face.landmarks[0] + face.landmarks[1]) / 2 - middle)
            if k not in used and distance < best_distance:
                best, best_distance = k, distance
        if best is not None:
            used.add(best)
            errors.append(float(np.linalg.norm(detected[best].landmarks - truth, axis=1).mean() / io))
            offsets.append((detected[best].landmarks - truth).mean(axis=0))
    return len(errors), errors, offsets, len(detected) - len(used)


def negatives(wheel: Path, detector: FaceDetector) -> int:
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
    parser.add_argument("--min-face-px", type=float, default=DetectorSettings.min_face_px)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", type=Path, default=None, metavar="WHEEL", help="scikit-image wheel: false detections")
    args = parser.parse_args(argv)
    detector = FaceDetector(settings=DetectorSettings(min_face_px=args.min_face_px))
    if args.negatives:
        return negatives(args.negatives, detector)
    faces = load_faces(args.data, args.faces, args.seed)
    print(f"{len(faces)} faces from {', '.join(SOURCES)}; min_face_px {args.min_face_px}")
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
            n, e, o, f = score(detected, truths)
            found, false = found + n, false + f
            errors += e
            offsets += o
        offset = np.mean(offsets, axis=0) if offsets else np.array([np.nan, np.nan])
        print(f"| {inter_ocular} | {found}/{len(faces)} = {found / len(faces):.0%} | {np.mean(errors) if errors else np.nan:.3f} "
              f"| {np.median(errors) if errors else np.nan:.3f} | {offset[0]:+.2f}, {offset[1]:+.2f} | {false} "
              f"| {1000 * seconds / pictures:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
