"""A tiny training cache in the prepare-data layout, built from generated faces (no research data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from face_images import synthetic_face

from training.data.degrade import bicubic_downsample


def write_generated_cache(folder: Path, train: int = 6, val: int = 2, seed: int = 0) -> Path:
    """hr.npy, parsing.npy, lr_x4.npy, lr_x8.npy and index.json for `train` + `val` generated faces."""
    rng = np.random.default_rng(seed)
    count = train + val
    hr = np.empty((count, 128, 128, 3), dtype=np.uint8)
    for row in range(count):
        face = np.asarray(synthetic_face(hue_shift=int(rng.integers(0, 80))), dtype=np.int16)
        noise = rng.integers(-12, 13, size=face.shape)
        hr[row] = np.clip(face + noise, 0, 255).astype(np.uint8)
    # A crude parsing map (compact ids 0–6) from brightness: enough to feed the parsing loss.
    parsing = (hr.mean(axis=3) // 37).astype(np.uint8).clip(0, 6)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "hr.npy", hr)
    np.save(folder / "parsing.npy", parsing)
    for scale in (4, 8):
        np.save(folder / f"lr_x{scale}.npy", np.stack([bicubic_downsample(image, scale) for image in hr]))
    index = [
        {"row": row, "source": f"generated/{row}.png", "dataset": "generated", "parsing": "mask",
         "split": "train" if row < train else "val"}
        for row in range(count)
    ]  # fmt: skip
    (folder / "index.json").write_text(json.dumps(index))
    return folder
