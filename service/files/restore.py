"""Restore the faces of photo files in-process (``portraitsr restore``), the pipeline of ``POST /restore``.

Files are read with the service's safe decoder, their faces found, aligned, restored by
:class:`service.core.inference.ModelRunner` in batches and pasted back into the bicubic upscale; the
output keeps the input's name (see :mod:`service.files.upscale`, whose file handling this shares).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from portraitsr.release import to_model_input, to_uint8
from service.core.images import (
    ImageInputError,
    ImageLimits,
    compose_output,
    decode_image,
    encode_image,
)
from service.core.inference import ModelRunner
from service.faces.detector import FaceDetector
from service.faces.restoration import FacePlan, FaceStatus, RestorePolicy, restore_photo
from service.files.model_choice import ModelChoice
from service.files.upscale import (
    InputFile,
    UpscaleOptions,
    UpscaleReport,
    find_name_clashes,
    output_format_for,
    output_path_for,
)


def model_restorer(runner: ModelRunner, batch_size: int = 8) -> Callable[[np.ndarray], list[np.ndarray]]:
    """N×side×side×3 float crops → N restored uint8 faces, ``batch_size`` per model run."""

    def run(crops: np.ndarray) -> list[np.ndarray]:
        faces = []
        for start in range(0, len(crops), batch_size):
            faces += list(to_uint8(runner.run(to_model_input(crops[start:start + batch_size]))))
        return faces

    return run


@dataclass(frozen=True)
class RestoreOptions:
    output_dir: object
    output_format: str | None = None
    batch_size: int = 8
    limits: ImageLimits = field(default_factory=ImageLimits)
    policy: RestorePolicy = field(default_factory=RestorePolicy)


def restore_files(
    inputs: list[InputFile],
    models: ModelChoice,
    detector: FaceDetector,
    options: RestoreOptions,
    report: UpscaleReport,
    on_message: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    on_result: Callable[[InputFile, list[FacePlan], ModelRunner], None] = lambda item, plans, runner: None,
) -> UpscaleReport:
    """Restore each input photo, all its faces by the model ``models`` picks for the photo (as the
    API does); failures are reported and skipped."""
    naming = UpscaleOptions(output_dir=options.output_dir, output_format=options.output_format)
    clashes = find_name_clashes(inputs, naming)
    restorers = {runner: model_restorer(runner, options.batch_size) for runner in models.runners.values()}
    for item in inputs:
        if item.path in clashes:
            report.failed.append((item.path, clashes[item.path]))
            on_message(f"skipped {item.path}: {clashes[item.path]}")
            continue
        try:
            data = item.path.read_bytes()
            decoded = decode_image(data, options.limits)
            runner = models.runner_for(data, decoded.rgb)
            faces = detector.detect(decoded.rgb)
            restored, plans = restore_photo(decoded.rgb, faces, runner.scale, restorers[runner], options.policy)
            destination = output_path_for(item, naming)
            destination.parent.mkdir(parents=True, exist_ok=True)
            image = compose_output(restored, decoded.alpha)
            destination.write_bytes(encode_image(image, output_format_for(item.path, options.output_format)))
        except ImageInputError as error:
            report.failed.append((item.path, error.reason))
            on_message(f"skipped {item.path}: {error.reason}")
            continue
        except OSError as error:
            report.failed.append((item.path, f"cannot read or write it: {error.strerror or error}"))
            on_message(f"skipped {item.path}: {error.strerror or error}")
            continue
        report.written.append(destination)
        on_result(item, plans, runner)
    return report


def describe(plans: list[FacePlan]) -> str:
    restored = sum(plan.status == FaceStatus.RESTORED for plan in plans)
    others = [plan.status for plan in plans if plan.status != FaceStatus.RESTORED]
    extra = f" ({', '.join(f'{others.count(s)} {s}' for s in sorted(set(others)))})" if others else ""
    return f"{restored} face{'s' * (restored != 1)} restored{extra}"
