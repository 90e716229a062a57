"""Every runtime the service may pick, held to the reference on real faces (the manifest's ``runtime_parity``).

``auto`` (:mod:`portraitsr.runtimes`) may run a release on ONNX Runtime fp32 (CPU: the reference;
CUDA), OpenVINO fp32 or OpenVINO bf16. Each is run on the same real faces as the reference:

- **fp32** is held per pixel: max |candidate − reference| of the float output ≤ :data:`FP32_TOLERANCE`.
- **bf16** rounds every product to 8 bits of mantissa, so single pixels move by a few levels
  (not held per pixel). It is held by PSNR instead: on every face, the PSNR-Y of its output
  against the reference's output is at least :data:`BF16_MIN_PSNR_DB`. Noise that far below a
  model's own error (26–31 dB against the HR faces) costs it about a hundredth of a dB, whatever
  the model; the cost itself, PSNR-Y against the HR faces minus the reference's, is recorded
  (``psnr_y_delta``; on Helen-50: −0.017 dB at ×8, −0.011 dB at ×4, docs/benchmarks.md).

The faces are the two real faces of the repository (docs/images: Eileen Collins, Grace Hopper,
both public domain, framed like Helen-50) and their mirror images, through the evaluation
protocol (Pillow bicubic down, the model, rounding to uint8). No research data needed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portraitsr.release import ReleaseModel
from portraitsr.runtimes import REFERENCE, RuntimeRequest, RuntimeUnavailable, choose_runtime
from training.data.degrade import bicubic_downsample
from training.metrics import psnr_y

FACES_DIR = Path(__file__).resolve().parent.parent / "docs" / "images"
FACE_FILES = ("astronaut-face-128.png", "hopper-face-128.png")
FP32_TOLERANCE = 1e-4
BF16_MIN_PSNR_DB = 45.0
# What auto can pick besides the reference (portraitsr.runtimes.choose_runtime).
CANDIDATES = (
    RuntimeRequest("onnxruntime", "fp32", "cuda"),
    RuntimeRequest("openvino", "fp32", "cpu"),
    RuntimeRequest("openvino", "bf16", "cpu"),
)


class RuntimeParityError(ValueError):
    """A runtime's output is further from the reference's than its tolerance."""


def parity_faces() -> list[tuple[str, np.ndarray]]:
    """(name, 128×128×3 uint8) of the real faces and their mirror images."""
    faces = []
    for file_name in FACE_FILES:
        with Image.open(FACES_DIR / file_name) as image:
            rgb = np.asarray(image.convert("RGB"))
        faces += [(file_name, rgb), (f"{file_name} mirrored", np.ascontiguousarray(rgb[:, ::-1]))]
    return faces


def _outputs(model: ReleaseModel, lrs: list[np.ndarray]) -> list[np.ndarray]:
    return [model.run(model_input)[0] for model_input in lrs]


def _skip_reason(request: RuntimeRequest) -> str | None:
    """Why ``request`` cannot be checked on this machine, or None."""
    try:
        choice = choose_runtime(request)
    except RuntimeUnavailable as error:
        return str(error)
    if choice.fallback_reason or (choice.runtime, choice.device, choice.precision) != (
        request.runtime, request.device, request.precision
    ):
        return choice.fallback_reason or f"runs {choice.runtime} {choice.device} {choice.precision} here"
    return None


def check_runtimes(
    onnx_path: str | Path, scale: int, faces: list[tuple[str, np.ndarray]] | None = None, threads: int = 0
) -> dict[str, Any]:
    """Each candidate runtime against the reference on ``faces`` (default: :func:`parity_faces`); JSON-ready.

    Candidates this machine cannot run (no CUDA, no bf16 CPU, not installed) are listed with the
    reason, not checked. Raises :class:`RuntimeParityError` if a checked one is out of tolerance or
    cannot run the model at all.
    """
    from portraitsr.release import to_model_input, to_uint8

    faces = faces or parity_faces()
    hrs = [hr for _, hr in faces]
    lrs = [to_model_input(bicubic_downsample(hr, scale)) for hr in hrs]
    reference = _outputs(ReleaseModel(onnx_path, scale, runtime=REFERENCE.with_threads(threads)), lrs)
    reference_psnr = float(np.mean([psnr_y(to_uint8(sr), hr) for sr, hr in zip(reference, hrs, strict=True)]))
    rows = []
    for request in CANDIDATES:
        row: dict[str, Any] = {"runtime": request.runtime, "device": request.device, "precision": request.precision}
        reason = _skip_reason(request)
        if reason is not None:
            rows.append({**row, "checked": False, "reason": reason})
            continue
        try:
            outputs = _outputs(ReleaseModel(onnx_path, scale, runtime=replace(request, threads=threads)), lrs)
        except Exception as error:  # the runtime cannot read or run the model (seen: OpenVINO on a flip ensemble)
            rows.append({**row, "checked": True, "passed": False, "error": f"{type(error).__name__}: {error}"[:2000]})
            continue
        max_abs = max(float(np.abs(out - ref).max()) for out, ref in zip(outputs, reference, strict=True))
        agreement = min(psnr_y(to_uint8(out), to_uint8(ref)) for out, ref in zip(outputs, reference, strict=True))
        psnr = float(np.mean([psnr_y(to_uint8(sr), hr) for sr, hr in zip(outputs, hrs, strict=True)]))
        row.update(checked=True, max_abs_diff=max_abs, psnr_y=round(psnr, 4), psnr_y_delta=round(psnr - reference_psnr, 4),
                   min_psnr_y_vs_reference=None if math.isinf(agreement) else round(agreement, 2))  # None: identical pixels
        if request.precision == "bf16":
            row.update(tolerance={"min_psnr_y_vs_reference": BF16_MIN_PSNR_DB}, passed=agreement >= BF16_MIN_PSNR_DB)
        else:
            row.update(tolerance={"max_abs_diff": FP32_TOLERANCE}, passed=max_abs <= FP32_TOLERANCE)
        rows.append(row)
    result = {
        "reference": {"runtime": "onnxruntime", "device": "cpu", "precision": "fp32", "psnr_y": round(reference_psnr, 4)},
        "faces": [name for name, _ in faces],
        "protocol": f"HR 128 px → Pillow bicubic ×1/{scale} → model → uint8; PSNR-Y against the HR face",
        "runtimes": rows,
    }
    failed = [row for row in rows if row.get("checked") and not row["passed"]]
    if failed:
        raise RuntimeParityError(f"{onnx_path}: fails against ONNX Runtime fp32 on a runtime the service may pick: {failed}")
    return result
