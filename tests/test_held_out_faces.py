"""The photo benchmarks draw only held-out faces, evenly over the sets with landmarks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training.data.held_out_faces import SOURCES, held_out_faces


def make_data(tmp_path, per_set: int = 3):
    data, cache = tmp_path / "data", tmp_path / "cache"
    cache.mkdir()
    index, row = [], 0
    for number, (dataset, folder) in enumerate(SOURCES.items()):
        (data / folder / "images").mkdir(parents=True)
        landmarks = {}
        for k in range(2 * per_set):
            name = f"{dataset}-{k}"
            split = "val" if k % 2 else "train"
            shade = 40 + 30 * k if split == "val" else 250  # train faces are white: never drawn
            Image.new("RGB", (64 + number, 64), (shade, shade, shade)).save(data / folder / "images" / f"{name}.jpg")
            landmarks[name] = [[20, 25], [44, 25], [32, 35], [24, 45], [40, 45]]
            index.append({"row": row, "source": f"{folder}/images/{name}.jpg", "dataset": dataset, "split": split})
            row += 1
        landmarks.pop(f"{dataset}-{2 * per_set - 1}")  # a held-out face without landmarks is skipped
        (data / folder / "landmarks.json").write_text(json.dumps(landmarks))
    (cache / "index.json").write_text(json.dumps(index))
    return data, cache


def test_only_held_out_faces_with_landmarks_evenly_over_the_sets(tmp_path):
    data, cache = make_data(tmp_path)
    faces = held_out_faces(data, cache, 6, seed=0)
    assert len(faces) == 6
    assert all(np.asarray(image).mean() < 240 for image, _ in faces)  # no training face
    assert all(points.shape == (5, 2) for _, points in faces)
    assert sorted(image.width for image, _ in held_out_faces(data, cache, 3, seed=1)) == [64, 65, 66]  # one per set
    with pytest.raises(ValueError, match="only 6 held-out faces"):
        held_out_faces(data, cache, 7, seed=0)
