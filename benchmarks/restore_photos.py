"""Whole-photo restoration on composed group photos: face-region PSNR-Y gain over bicubic, and latency.

Group photos are composed from real faces the release models never trained on: the training
cache's held-out faces of SCUT-FBP5500, All-Age-Faces and the London set, with their annotated
landmarks (training/data/held_out_faces.py; Helen-50 is not used), shrunk so that, after the ×scale
Pillow-bicubic downscale, their inter-ocular distance is the one asked for, on a textured
background. The low-resolution photo goes through
the in-process pipeline of ``POST /restore`` (detector, alignment, the release ONNX model,
paste-back); each face region (1.3 inter-ocular distances around the eyes-mouth box) is compared
with the original in PSNR-Y, against the bicubic upscale of the same photo. The last line pools
the faces from 10 px between the eyes up (×4; 5 px at ×8).

    python -m benchmarks.restore_photos --faces 48 --scale 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.face_detection import PER_ROW, background, compose
from portraitsr.manifest import load_manifest
from portraitsr.runtimes import RuntimeRequest
from service.core.inference import ModelRunner
from service.core.settings import DEFAULT_MANIFEST
from service.faces.detector import FaceDetector
from service.faces.restoration import FaceStatus, restore_photo, upscale_background
from service.files.restore import model_restorer
from training.data.held_out_faces import held_out_faces
from training.metrics import psnr_y

INTER_OCULAR = {4: (5, 6, 8, 10, 12, 14, 18, 22, 28, 36), 8: (3, 4, 5, 6, 7, 9, 11, 14, 18)}
POOLED_FROM = {4: 10, 8: 5}  # the bar: faces at least this far between the eyes
ROWS = 2  # faces per photo: PER_ROW × ROWS


def compose_hr(faces, inter_ocular_hr: float, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """High-resolution group photo (uint8) and each face's five landmarks in it."""
    canvas, truths = compose(faces, inter_ocular_hr, seed, margin=16, jitter=False)
    return np.asarray(canvas), truths


def crop_to_multiple(photo: np.ndarray, multiple: int) -> np.ndarray:
    return photo[: photo.shape[0] // multiple * multiple, : photo.shape[1] // multiple * multiple]


def face_region(points: np.ndarray, shape) -> tuple[slice, slice]:
    inter_ocular = np.linalg.norm(points[1] - points[0])
    low, high = points.min(axis=0) - 0.65 * inter_ocular, points.max(axis=0) + 0.65 * inter_ocular
    x0, y0 = np.maximum(np.floor(low).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(high).astype(int), [shape[1], shape[0]])
    return slice(y0, y1), slice(x0, x1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("data-cache/faces"), help="the training cache (its held-out split)")
    parser.add_argument("--faces", type=int, default=48, help="faces per size (evenly from the three sources)")
    parser.add_argument("--scale", type=int, choices=(4, 8), default=4)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", type=Path, default=None, help="write the first photo (LR, bicubic, restored) here")
    parser.add_argument("--latency", action="store_true", help="only time photos of 0, 1, 4, 8 and 16 faces")
    args = parser.parse_args(argv)
    spec = {s.scale: s for s in load_manifest(args.manifest)}[args.scale]
    runner = ModelRunner(spec, RuntimeRequest(device="cpu", threads=args.threads))  # what the service runs
    restorer = model_restorer(runner, batch_size=8)
    detector = FaceDetector()
    faces = held_out_faces(args.data, args.cache, args.faces, args.seed)
    if args.latency:
        return latency(faces, detector, restorer, args.scale)
    print(f"{len(faces)} held-out faces (SCUT-FBP5500, All-Age-Faces, London), ×{args.scale}, {spec.name}, {len(faces) // (PER_ROW * ROWS)} "
          f"photos of {PER_ROW * ROWS} faces per size")
    print("| inter-ocular px (LR) | found | restored | gain dB mean | gain ≥ 0.5 dB | bicubic dB | restored dB | ms per photo |")
    print("|---|---|---|---|---|---|---|---|")
    per_photo = PER_ROW * ROWS
    pooled = []
    for inter_ocular in INTER_OCULAR[args.scale]:
        gains, bicubic_db, restored_db, found, restored_count, seconds, photos = [], [], [], 0, 0, 0.0, 0
        for start in range(0, len(faces) - per_photo + 1, per_photo):
            hr, truths = compose_hr(faces[start:start + per_photo], inter_ocular * args.scale, args.seed + start)
            hr = crop_to_multiple(hr, args.scale)
            lr_image = Image.fromarray(hr).resize((hr.shape[1] // args.scale, hr.shape[0] // args.scale), Image.Resampling.BICUBIC)
            lr = np.asarray(lr_image, dtype=np.float32) / 255.0
            began = time.perf_counter()
            detected = detector.detect(lr)
            output, plans = restore_photo(lr, detected, args.scale, restorer)
            seconds += time.perf_counter() - began
            photos += 1
            bicubic = upscale_background(lr, args.scale)
            if args.save and start == 0 and inter_ocular == INTER_OCULAR[args.scale][2]:
                args.save.mkdir(parents=True, exist_ok=True)
                lr_image.save(args.save / f"group-x{args.scale}-lr.png")
                Image.fromarray(bicubic).save(args.save / f"group-x{args.scale}-bicubic.png")
                Image.fromarray(output).save(args.save / f"group-x{args.scale}-restored.png")
            for truth in truths:
                eye_mid = (truth[0] + truth[1]) / 2 / args.scale
                match = [p for p in plans if np.linalg.norm(p.face.landmarks[:2].mean(axis=0) - eye_mid) < 0.5 * inter_ocular]
                found += bool(match)
                restored_count += bool(match) and match[0].status == FaceStatus.RESTORED
                region = face_region(truth, hr.shape)
                before, after = psnr_y(bicubic[region], hr[region]), psnr_y(output[region], hr[region])
                gains.append(after - before)
                bicubic_db.append(before)
                restored_db.append(after)
        gains = np.asarray(gains)
        total = len(gains)
        if inter_ocular >= POOLED_FROM[args.scale]:
            pooled.extend(gains)
        print(f"| {inter_ocular} | {found}/{total} | {restored_count}/{total} | {gains.mean():+.2f} | "
              f"{(gains >= 0.5).mean():.0%} | {np.mean(bicubic_db):.2f} | {np.mean(restored_db):.2f} | {1000 * seconds / photos:.0f} |")
    pooled = np.asarray(pooled)
    print(f"\npooled from {POOLED_FROM[args.scale]} px between the eyes: {len(pooled)} faces, mean gain {pooled.mean():+.2f} dB, "
          f"{(pooled >= 0.5).sum()} ({(pooled >= 0.5).mean():.0%}) gain ≥ 0.5 dB")
    return 0


def latency(faces, detector, restorer, scale: int, repeats: int = 3) -> int:
    """Median in-process time per photo (detect, restore = align + model + paste) by number of faces."""
    print(f"×{scale}, inter-ocular {10 if scale == 4 else 5} px, median of {repeats}")
    print("| faces | photo (LR) | detect ms | align + model + paste ms | total ms |")
    print("|---|---|---|---|---|")
    for count in (0, 1, 4, 8, 16):
        chosen = faces[:count] if count else faces[:1]
        hr, _ = compose_hr(chosen, (10 if scale == 4 else 5) * scale, 0)
        hr = crop_to_multiple(hr, scale)
        if count == 0:
            hr = np.asarray(background(hr.shape[0], hr.shape[1], 0))
        lr = np.asarray(Image.fromarray(hr).resize((hr.shape[1] // scale, hr.shape[0] // scale), Image.Resampling.BICUBIC),
                        dtype=np.float32) / 255.0
        timings = []
        for _ in range(repeats):
            began = time.perf_counter()
            detected = detector.detect(lr)
            found = time.perf_counter()
            restore_photo(lr, detected, scale, restorer)
            timings.append((found - began, time.perf_counter() - found))
        detect_s, restore_s = np.median(np.asarray(timings), axis=0)
        print(f"| {len(detected)} | {lr.shape[1]}×{lr.shape[0]} | {1000 * detect_s:.0f} | {1000 * restore_s:.0f} "
              f"| {1000 * (detect_s + restore_s):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
