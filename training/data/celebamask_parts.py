"""CelebAMask-HQ's original annotation layout: one binary PNG per face part.

The full download has ``CelebAMask-HQ-mask-anno/<k>/<index:05d>_<part>.png`` (k = 0..14),
while ``CelebA-HQ-img/<index>.jpg`` names the images. Parts are painted in the order of the
official ``g_mask.py``, which also defines the class ids (1 skin … 18 cloth) used here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PART_NAMES: tuple[str, ...] = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
PART_IDS = {name: index + 1 for index, name in enumerate(PART_NAMES)}
_PART_FILE = re.compile(r"^(\d+)_(" + "|".join(PART_NAMES) + r")\.png$")


@dataclass(frozen=True)
class PartMasks:
    """The part files of one face, as (class id, file) pairs in painting order."""

    parts: tuple[tuple[int, Path], ...]

    @property
    def name(self) -> str:
        return f"{len(self.parts)} part masks ({self.parts[0][1].name.split('_')[0]}_*.png)"

    def read(self) -> np.ndarray:
        """Combined H×W uint8 id mask (later parts paint over earlier ones, as in g_mask.py)."""
        combined: np.ndarray | None = None
        for class_id, path in self.parts:
            with Image.open(path) as image:
                part = np.asarray(image.convert("L"))
            if combined is None:
                combined = np.zeros(part.shape, dtype=np.uint8)
            elif part.shape != combined.shape:
                raise ValueError(f"{path.name}: size {part.shape} differs from the other parts {combined.shape}")
            combined[part != 0] = class_id
        if combined is None:
            raise ValueError("no part masks")
        return combined


def find_part_masks(mask_dir: Path) -> dict[str, PartMasks]:
    """Part masks under ``mask_dir`` (any depth), keyed by image stem: ``"42"`` and ``"00042"``."""
    found: dict[int, list[tuple[int, Path]]] = {}
    for path in mask_dir.rglob("*.png"):
        match = _PART_FILE.match(path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append((PART_IDS[match.group(2)], path))
    masks: dict[str, PartMasks] = {}
    for index, parts in found.items():
        entry = PartMasks(tuple(sorted(parts)))
        masks[str(index)] = entry
        masks[f"{index:05d}"] = entry
    return masks
