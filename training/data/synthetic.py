"""Generated faces and a generated training cache, for where no research data may be used.

The tests, the GPU check (a machine without the data sets) and the load benchmarks use them: a
cartoon face drawn with Pillow, and a tiny cache in the prepare-data layout (:mod:`training.data.cache`)
made of such faces. NumPy and Pillow only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.data.cache import ParsingSource, Split, index_entry, write_index
from training.data.degrade import bicubic_downsample


def synthetic_face(side: int = 128, hue_shift: int = 0) -> Image.Image:
    """A simple cartoon face drawn with Pillow: background, hair, skin, eyes, brows, nose, mouth."""
    image = Image.new("RGB", (128, 128), (70 + hue_shift, 110, 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse((22, 8, 106, 100), fill=(60, 40, 30))  # hair
    draw.ellipse((30, 22, 98, 118), fill=(224, 172, 140))  # face
    draw.rectangle((30, 18, 98, 40), fill=(60, 40, 30))  # fringe
    for x in (44, 72):
        draw.line((x - 2, 50, x + 12, 48), fill=(50, 35, 25), width=3)  # brows
        draw.ellipse((x, 56, x + 12, 64), fill=(250, 250, 250))  # eye whites
        draw.ellipse((x + 4, 57, x + 9, 63), fill=(40, 60, 90))  # irises
    draw.polygon([(64, 64), (58, 84), (68, 84)], fill=(200, 145, 118))  # nose
    draw.chord((50, 88, 78, 104), 0, 180, fill=(170, 60, 70))  # mouth
    if side != 128:
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return image


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
    write_index(folder, [
        index_entry(row, f"generated/{row}.png", "generated", ParsingSource.MASK, Split.TRAIN if row < train else Split.VAL)
        for row in range(count)
    ])
    return folder
