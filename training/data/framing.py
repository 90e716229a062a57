"""Bring faces to the Helen-50 benchmark framing with a scale + translation.

Aligned sets (eyes level, face centred) get one transform per dataset, fitted to the set's mean
landmarks; images with five landmarks of their own get one each, fitted to their points. The
numbers and their provenance live in ``training/configs/framing.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from portraitsr.config_loading import check_keys, read_yaml

DEFAULT_FRAMING_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "framing.yaml"

PadMode = Literal["reflect", "edge", "symmetric"]


@dataclass(frozen=True)
class FaceLandmarks:
    """Mean landmarks in a 128-px frame of the whole image."""

    eye_mid: tuple[float, float]
    inter_ocular: float
    mouth: tuple[float, float]

    def points(self) -> np.ndarray:
        """3×2 array: left eye (image left), right eye, mouth centre."""
        x, y = self.eye_mid
        half = self.inter_ocular / 2
        return np.array([[x - half, y], [x + half, y], list(self.mouth)], dtype=np.float64)


@dataclass(frozen=True)
class FramingPreset:
    landmarks: FaceLandmarks
    pad_mode: PadMode
    provenance: str


@dataclass(frozen=True)
class FramingConfig:
    size: int
    target: FaceLandmarks
    target_provenance: str
    presets: dict[str, FramingPreset]

    def framer(self, preset: str) -> FaceFramer:
        if preset not in self.presets:
            raise KeyError(f"unknown framing preset {preset!r}; known: {', '.join(sorted(self.presets))}")
        chosen = self.presets[preset]
        scale, offset = fit_scale_translation(chosen.landmarks.points(), self.target.points())
        return FaceFramer(size=self.size, scale=scale, offset=offset, pad_mode=chosen.pad_mode)

    def landmark_framer(self, five_points: np.ndarray, source_width: int, pad_mode: PadMode) -> FaceFramer:
        """The framer of one image from its own five points (source pixels): the same least-squares
        scale + translation as the presets, fitted to its eyes and mouth centre instead of a set's means."""
        points = np.asarray(five_points, dtype=np.float64) * (128.0 / source_width)
        eyes_and_mouth = np.stack([points[0], points[1], (points[3] + points[4]) / 2])
        scale, offset = fit_scale_translation(eyes_and_mouth, self.target.points())
        return FaceFramer(size=self.size, scale=scale, offset=offset, pad_mode=pad_mode)


LANDMARK_KEYS = ("eye_mid", "inter_ocular", "mouth")


def _landmarks(raw: dict, where: str, also: tuple[str, ...]) -> FaceLandmarks:
    check_keys(raw, (*LANDMARK_KEYS, "provenance", *also), where)
    return FaceLandmarks(
        eye_mid=(float(raw["eye_mid"][0]), float(raw["eye_mid"][1])),
        inter_ocular=float(raw["inter_ocular"]),
        mouth=(float(raw["mouth"][0]), float(raw["mouth"][1])),
    )


def load_framing_config(path: str | Path | None = None) -> FramingConfig:
    # The YAML keeps each preset's numbers, pad mode and provenance side by side, so it is mapped by
    # hand; its keys are still checked, as every configuration's are.
    path = Path(path or DEFAULT_FRAMING_CONFIG)
    raw = read_yaml(path)
    check_keys(raw, ("size", "target", "presets"), path.name)
    presets = {
        name: FramingPreset(
            landmarks=_landmarks(entry, f"{path.name}: presets.{name}", ("pad_mode",)),
            pad_mode=entry.get("pad_mode", "reflect"),
            provenance=str(entry.get("provenance", "")),
        )
        for name, entry in raw["presets"].items()
    }
    return FramingConfig(
        size=int(raw["size"]),
        target=_landmarks(raw["target"], f"{path.name}: target", ("name",)),
        target_provenance=str(raw["target"].get("provenance", "")),
        presets=presets,
    )


def fit_scale_translation(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares ``target ≈ scale · source + offset`` (no rotation: head tilt stays, as in the benchmark)."""
    source_centred = source - source.mean(axis=0)
    target_centred = target - target.mean(axis=0)
    scale = float((source_centred * target_centred).sum() / (source_centred**2).sum())
    offset = target.mean(axis=0) - scale * source.mean(axis=0)
    return scale, offset


@dataclass(frozen=True)
class FaceFramer:
    """Maps 128-frame coordinates of a source image to output pixels: ``out = scale·u + offset``."""

    size: int
    scale: float
    offset: np.ndarray
    pad_mode: PadMode = "reflect"

    def map_point(self, x: float, y: float, source_width: int) -> tuple[float, float]:
        """Source pixel coordinates (continuous) -> output pixel coordinates."""
        unit = 128.0 / source_width
        return (self.scale * x * unit + self.offset[0], self.scale * y * unit + self.offset[1])

    def crop_box(self, source_width: int) -> tuple[float, float, float, float]:
        """The square region (left, top, right, bottom) of the source that becomes the output."""
        px_per_unit = source_width / 128.0
        left = -self.offset[0] / self.scale * px_per_unit
        top = -self.offset[1] / self.scale * px_per_unit
        side = self.size / self.scale * px_per_unit
        return (left, top, left + side, top + side)

    def _resize(self, array: np.ndarray, box_width_reference: int, resample: int) -> np.ndarray:
        height, width = array.shape[:2]
        left, top, right, bottom = self.crop_box(box_width_reference)
        # A box may be given for an image of another resolution (masks at 512 for 1024 images).
        factor = width / box_width_reference
        left, top, right, bottom = (v * factor for v in (left, top, right, bottom))
        pad_left = max(0, math.ceil(-left))
        pad_top = max(0, math.ceil(-top))
        pad_right = max(0, math.ceil(right - width))
        pad_bottom = max(0, math.ceil(bottom - height))
        if pad_left or pad_top or pad_right or pad_bottom:
            pad = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (array.ndim - 2)
            array = np.pad(array, pad, mode=self.pad_mode)
        box = (left + pad_left, top + pad_top, right + pad_left, bottom + pad_top)
        image = Image.fromarray(np.ascontiguousarray(array))
        return np.asarray(image.resize((self.size, self.size), resample, box=box))

    def frame_image(self, image: Image.Image) -> np.ndarray:
        """RGB image -> size×size×3 uint8 (antialiased bicubic)."""
        rgb = np.asarray(image.convert("RGB"))
        return self._resize(rgb, rgb.shape[1], Image.BICUBIC)

    def frame_mask(self, mask: np.ndarray) -> np.ndarray:
        """H×W class-id mask (uint8) of the same view -> size×size uint8 (nearest neighbour)."""
        mask = np.asarray(mask, dtype=np.uint8)
        return self._resize(mask, mask.shape[1], Image.NEAREST)
