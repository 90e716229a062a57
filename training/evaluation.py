"""The evaluation protocol (design.md §2): HR → Pillow-bicubic LR → model → SR rounded to uint8,
scored with PSNR-Y, SSIM-Y and LPIPS beside plain bicubic upsampling on the same images.

Models are "upscalers": callables from a batch of LR images (N×h×w×3 uint8) to SR images
(N×H×W×3 uint8). One runs an exported ONNX file exactly as the service does (``portraitsr.release``:
same session, padding and rounding); one runs a training checkpoint in PyTorch, fed and read back
the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portraitsr.release import (
    IMAGE_SUFFIXES,
    INPUT_NAME,
    OUTPUT_NAME,
    ReleaseModel,
    default_input_multiple,
    pad_to_multiple,
    to_model_input,
    to_uint8,
)
from portraitsr.runtimes import REFERENCE, RuntimeRequest
from training.config import VAL_INPUTS
from training.data.cache import TrainingCache
from training.data.degrade import bicubic_downsample
from training.degradations.benchmark import degraded_held_out
from training.metrics import lpips, psnr_y, ssim_y

METRICS = ("psnr_y", "ssim_y", "lpips")

Upscaler = Callable[[np.ndarray], np.ndarray]


def load_hr_folder(folder: str | Path, scale: int) -> list[tuple[str, np.ndarray]]:
    """(file name, H×W×3 uint8 RGB) for every image in ``folder``, sorted by name."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    images = []
    for path in paths:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        if rgb.shape[0] % scale or rgb.shape[1] % scale:
            raise ValueError(f"{path}: size {rgb.shape[1]}×{rgb.shape[0]} is not a multiple of ×{scale}")
        images.append((path.name, rgb))
    return images


def load_hr_cache(cache_dir: str | Path, split: str = "val", source: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(source file, 128×128×3 uint8) of a prepare-data cache's ``split``, optionally one ``source`` dataset."""
    cache = TrainingCache(cache_dir)
    entries = cache.entries(split, source)
    if not entries:
        present = cache.datasets(split)
        raise ValueError(f"{cache_dir}: no {split!r} images from {source!r} (datasets in that split: {present})")
    hr = cache.hr()
    return [(entry["source"], np.asarray(hr[entry["row"]])) for entry in entries]


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: Pillow bicubic LR → HR, h×w×3 uint8 → (s·h)×(s·w)×3 uint8."""
    height, width = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((width * scale, height * scale), Image.BICUBIC))


class OnnxUpscaler:
    """An exported model, run exactly as the service runs it on ``runtime`` (default: the reference,
    ONNX Runtime fp32 on the CPU, so that scores do not depend on the machine)."""

    def __init__(
        self, path: str | Path, scale: int, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
        runtime: RuntimeRequest = REFERENCE,
    ) -> None:
        self.model = ReleaseModel(path, scale, input_name=input_name, output_name=output_name, runtime=runtime)
        self.scale = scale

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.model.upscale_uint8(lr)


class CheckpointUpscaler:
    """A training checkpoint in PyTorch, fed and read back like the released model."""

    def __init__(self, path: str | Path, config: str | None = None, device: str = "cpu") -> None:
        import torch

        from model.config import load_model_config
        from training.checkpoint import load_checkpoint, network_from_checkpoint

        override = load_model_config(config) if config is not None else None
        self.net = network_from_checkpoint(load_checkpoint(path), override, source=str(path)).to(device)
        self.config = self.net.config
        self.input_multiple = default_input_multiple(self.scale)
        self.device = device
        self._torch = torch

    @property
    def scale(self) -> int:
        return self.config.scale

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        torch = self._torch
        height, width = lr.shape[1:3]
        padded = pad_to_multiple(to_model_input(lr), self.input_multiple)
        with torch.inference_mode():
            sr = self.net(torch.from_numpy(padded).to(self.device)).sr
        return to_uint8(sr.float().cpu().numpy()[:, :, : height * self.scale, : width * self.scale])


def _scores(sr: np.ndarray, hr: np.ndarray, distance: float | None) -> dict[str, float | None]:
    return {"psnr_y": psnr_y(sr, hr), "ssim_y": ssim_y(sr, hr), "lpips": distance}


def _mean(rows: list[dict[str, Any]], method: str) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for metric in METRICS:
        values = [row[method][metric] for row in rows]
        # An identical image's infinite PSNR would make the mean infinite: that is the honest answer.
        means[metric] = None if any(v is None for v in values) else float(np.mean(values))
    return means


def evaluate_folder(
    hr_dir: str | Path,
    scale: int,
    upscaler: Upscaler | None = None,
    lpips_net: Any | None = None,
    batch_size: int = 10,
) -> dict[str, Any]:
    """Score ``upscaler`` (if any) and bicubic on every image of ``hr_dir``; JSON-ready result.

    ``lpips_net``: from ``training.metrics.load_lpips()``; None leaves LPIPS out (null in JSON).
    """
    return evaluate_images(load_hr_folder(hr_dir, scale), str(hr_dir), scale, upscaler, lpips_net, batch_size)


def evaluate_images(
    images: list[tuple[str, np.ndarray]],
    data: str,
    scale: int,
    upscaler: Upscaler | None = None,
    lpips_net: Any | None = None,
    batch_size: int = 10,
    inputs: str = "bicubic",
) -> dict[str, Any]:
    """`evaluate_folder` on (name, HR image) pairs already in memory; ``data`` says where they came from.

    ``inputs``: "bicubic" (the paper's protocol) or "benchmark": each face through one row of the
    fixed degradation table in rotation, as the real models' training validation (its row is named
    in the face's result); bicubic is then the upscale of that same degraded input.
    """
    if inputs not in VAL_INPUTS:
        raise ValueError(f"inputs must be one of {VAL_INPUTS}, not {inputs!r}")
    degraded, degradations = None, None
    if inputs == "benchmark":
        degraded, degradations = degraded_held_out(np.stack([image for _, image in images]), scale)
    methods = ["bicubic"] if upscaler is None else ["model", "bicubic"]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        hr = np.stack([image for _, image in chunk])
        if degraded is None:
            lr = np.stack([bicubic_downsample(image, scale) for image in hr])
        else:
            lr = degraded[start : start + batch_size]
        outputs = {"bicubic": np.stack([bicubic_upscale(image, scale) for image in lr])}
        if upscaler is not None:
            outputs["model"] = upscaler(lr)
            if outputs["model"].shape != hr.shape:
                raise ValueError(
                    f"model output {outputs['model'].shape} does not match HR {hr.shape} at ×{scale}"
                )
        distances = {
            m: (lpips(outputs[m], hr, lpips_net) if lpips_net is not None else None) for m in methods
        }
        for i, (name, image) in enumerate(chunk):
            row: dict[str, Any] = {"name": name}
            if degradations is not None:
                row["input"] = degradations[start + i]
            for method in methods:
                distance = None if distances[method] is None else float(distances[method][i])
                row[method] = _scores(outputs[method][i], image, distance)
            rows.append(row)
    return {
        "data": data,
        "scale": scale,
        "inputs": inputs,
        "count": len(rows),
        "mean": {method: _mean(rows, method) for method in methods},
        "images": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    """The mean scores as a small text table, model first, then bicubic."""

    def cell(value: float | None, digits: int) -> str:
        if value is None:
            return "-"
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"

    lines = [f"×{result['scale']} on {result['count']} images of {result['data']}",
             f"{'method':10s} {'PSNR-Y':>8s} {'SSIM-Y':>8s} {'LPIPS':>8s}"]  # fmt: skip
    for method, means in result["mean"].items():
        lines.append(
            f"{method:10s} {cell(means['psnr_y'], 2):>8s} {cell(means['ssim_y'], 4):>8s} {cell(means['lpips'], 4):>8s}"
        )
    return "\n".join(lines)
