"""Real faces no shipped model trained on, with their five annotated landmarks, for the photo benchmarks.

They are the training cache's held-out split (``split: val`` in its ``index.json``) of the sets
that come with five landmarks: SCUT-FBP5500, All-Age-Faces and the London set (its neutral
photos, split by person). The release models train on the other faces of those sets and choose
checkpoints on these; Helen-50 is never used here. The images are read at their full size from
the data folder (``../shared/data``), not from the cache's 128-px crops, so that faces can be
shrunk to any size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.cache import TrainingCache

# cache dataset name -> folder of the data set, whose landmarks.json is keyed by file stem
SOURCES = {"scut-fbp5500": "scut-fbp5500", "aaf": "aaf-crops", "frl-london": "frl-london"}


def held_out_faces(data: Path, cache_dir: Path, count: int, seed: int) -> list[tuple[Image.Image, np.ndarray]]:
    """``count`` held-out faces (image, 5×2 landmarks: eyes, nose, mouth corners), drawn evenly over the sources."""
    cache = TrainingCache(cache_dir)
    pools = []
    for dataset, folder in SOURCES.items():
        landmarks = json.loads((data / folder / "landmarks.json").read_text())
        entries = [e for e in cache.entries("val", dataset) if Path(e["source"]).stem in landmarks]
        pools.append([(data / e["source"], landmarks[Path(e["source"]).stem]) for e in entries])
    rng = np.random.default_rng(seed)
    for pool in pools:
        rng.shuffle(pool)
    chosen: list[tuple[Path, list]] = []
    while len(chosen) < count and any(pools):  # round robin: small pools are used up, the others fill in
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} held-out faces with landmarks in {cache_dir}, asked for {count}")
    return [(Image.open(path).convert("RGB"), np.asarray(points, dtype=np.float64)) for path, points in chosen]
