"""Upscale image files in-process with the released ONNX models (``portraitsr upscale``).

No server and no torch: the files are decoded with the service's safe decoder, grouped by size so
that same-size inputs run as one batch, upscaled by :class:`service.core.inference.ModelRunner` and
written under the output folder with their names kept. A file that cannot be read is reported
and skipped; the caller decides the exit status from :attr:`UpscaleReport.failed`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portraitsr.release import IMAGE_SUFFIXES
from service.core.images import (
    DecodedImage,
    ImageInputError,
    ImageLimits,
    compose_output,
    decode_image,
    encode_image,
    sr_to_uint8,
)
from service.core.inference import ModelRunner
from service.files.compare_strip import compare_strip
from service.files.model_choice import ModelChoice

# The output format that keeps each input extension (GIF and BMP are written as PNG).
FORMAT_OF_EXTENSION = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
EXTENSION_OF_FORMAT = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
COMPARE_SUFFIX = "_compare.png"


@dataclass(frozen=True)
class UpscaleOptions:
    output_dir: Path
    output_format: str | None = None  # None: from each input's extension
    batch_size: int = 8
    compare: bool = False
    compare_zoom: int = 1  # nearest-neighbour enlargement of the comparison panels
    limits: ImageLimits = field(default_factory=ImageLimits)


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative: Path  # where its output goes under the output folder (name kept)


@dataclass
class UpscaleReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files in folders without an image extension


def collect_inputs(paths: Iterable[Path], report: UpscaleReport) -> list[InputFile]:
    """Files as given, and the image files under folders (recursively, sorted, hidden ones left out).

    A missing path is recorded as a failure. Outputs keep the file name; files found in a folder
    keep their path relative to that folder.
    """
    inputs: list[InputFile] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if not child.is_file() or any(part.startswith(".") for part in relative.parts):
                    continue
                if child.suffix.lower() in IMAGE_SUFFIXES:  # (files named on the command line are always taken)
                    inputs.append(InputFile(child, relative))
                else:
                    report.ignored.append(child)
        elif path.is_file():
            inputs.append(InputFile(path, Path(path.name)))
        else:
            report.failed.append((path, "no such file or folder"))
    return inputs


def output_format_for(source: Path, requested: str | None) -> str:
    return requested or FORMAT_OF_EXTENSION.get(source.suffix.lower(), "png")


def output_path_for(item: InputFile, options: UpscaleOptions) -> Path:
    """The output keeps the input's name; the extension changes only when the format does."""
    output_format = output_format_for(item.path, options.output_format)
    relative = item.relative
    if FORMAT_OF_EXTENSION.get(relative.suffix.lower()) != output_format:
        relative = relative.with_suffix(EXTENSION_OF_FORMAT[output_format])
    return options.output_dir / relative


def find_name_clashes(inputs: list[InputFile], options: UpscaleOptions) -> dict[Path, str]:
    """Inputs whose output would overwrite another input's output, or the input itself."""
    clashes: dict[Path, str] = {}
    seen: dict[Path, Path] = {}
    for item in inputs:
        destination = output_path_for(item, options).resolve()
        if destination == item.path.resolve():
            clashes[item.path] = "its output would overwrite it; choose another output folder"
        elif destination in seen:
            clashes[item.path] = f"its output {destination.name} would overwrite the output of {seen[destination]}"
        else:
            seen[destination] = item.path
    return clashes


def _write(item: InputFile, decoded: DecodedImage, sr: np.ndarray, runner: ModelRunner, options: UpscaleOptions) -> list[Path]:
    destination = output_path_for(item, options)
    destination.parent.mkdir(parents=True, exist_ok=True)
    upscaled = compose_output(sr_to_uint8(sr), decoded.alpha)
    destination.write_bytes(encode_image(upscaled, output_format_for(item.path, options.output_format)))
    written = [destination]
    if options.compare:
        source = compose_output(sr_to_uint8(decoded.rgb.transpose(2, 0, 1)), decoded.alpha)
        strip = compare_strip(source, upscaled, runner.scale, zoom=options.compare_zoom)
        strip_path = destination.with_name(destination.stem + COMPARE_SUFFIX)
        strip.save(strip_path, format="PNG")
        written.append(strip_path)
    return written


def upscale_files(
    inputs: list[InputFile],
    models: ModelChoice,
    options: UpscaleOptions,
    report: UpscaleReport,
    on_message: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    on_progress: Callable[[int], None] = lambda count: None,
) -> UpscaleReport:
    """Upscale ``inputs``, each by the model ``models`` picks for it; same-size images of one model
    run together in batches of up to ``options.batch_size``.

    Images wait in one bucket per model and size until the bucket is full (or the files run out), so
    memory holds at most one batch per distinct model and size.
    """
    clashes = find_name_clashes(inputs, options)
    buckets: dict[tuple[ModelRunner, int, int], list[tuple[InputFile, DecodedImage]]] = {}

    def fail(path: Path, reason: str) -> None:
        report.failed.append((path, reason))
        on_message(f"skipped {path}: {reason}")
        on_progress(1)

    def flush(bucket: tuple[ModelRunner, int, int]) -> None:
        batch = buckets.pop(bucket, [])
        if not batch:
            return
        runner = bucket[0]
        lr = np.stack([decoded.rgb.transpose(2, 0, 1) for _, decoded in batch]).astype(np.float32)
        sr = runner.run(lr)
        for (item, decoded), one_sr in zip(batch, sr, strict=True):
            try:
                report.written.extend(_write(item, decoded, one_sr, runner, options))
            except (OSError, ValueError) as error:
                fail(item.path, f"cannot write its output: {error}")
                continue
            on_progress(1)

    for item in inputs:
        if item.path in clashes:
            fail(item.path, clashes[item.path])
            continue
        try:
            data = item.path.read_bytes()
            decoded = decode_image(data, options.limits)
        except ImageInputError as error:
            fail(item.path, error.reason)
            continue
        except OSError as error:
            fail(item.path, f"cannot read it: {error.strerror or error}")
            continue
        bucket = (models.runner_for(data, decoded.rgb), decoded.rgb.shape[0], decoded.rgb.shape[1])
        buckets.setdefault(bucket, []).append((item, decoded))
        if len(buckets[bucket]) >= options.batch_size:
            flush(bucket)
    for bucket in list(buckets):
        flush(bucket)
    return report

