"""The training cache as a torch Dataset (memory-mapped: workers share the page cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.cache import TrainingCache
from training.data.parsing import NUM_COMPACT_CLASSES, one_hot
from training.degradations.config import DegradationConfig
from training.degradations.pipeline import degrade, validate_config


class FaceDataset(Dataset):
    """Items ``{"lr": 3×h×w, "hr": 3×128×128, "parsing": P×128×128 one-hot}``, float32 in [0, 1].

    ``split`` is ``"train"``, ``"val"`` or ``"all"``; ``scale`` picks ``lr_x{scale}.npy`` (made
    with Pillow bicubic by prepare-data). ``augment`` flips lr, hr and parsing together.
    ``oversample`` maps a dataset name (the index's ``dataset`` field) to how many times each of
    its images appears per epoch, to weight a small, sharp source against a large one.
    ``degradation`` (when enabled) makes each LR from the (flipped) HR with the random pipeline of
    training/degradations, drawn from NumPy's global generator — which `SeededSamples` seeds per
    sample, so the same sample gets the same LR on every run, in any worker.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        scale: int,
        augment: bool = False,
        parsing_channels: int = NUM_COMPACT_CLASSES,
        oversample: dict[str, int] | None = None,
        degradation: DegradationConfig | None = None,
    ) -> None:
        self.cache = TrainingCache(cache_dir)
        self.degradation = degradation if degradation is not None and degradation.enabled else None
        if self.degradation is not None:
            validate_config(self.degradation)
        self.scale = scale
        self.augment = augment
        self.parsing_channels = parsing_channels
        self.cache.lr_path(scale)  # fail here, not in a DataLoader worker
        self.entries = _oversampled(self.cache.entries(split), oversample or {})
        self.rows = np.array([entry["row"] for entry in self.entries], dtype=np.int64)
        # Opened lazily so a Dataset pickled into DataLoader workers maps the files itself.
        self._arrays: dict[str, np.ndarray] | None = None

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = self.cache.arrays(self.scale)
        return self._arrays

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        arrays = self._open()
        row = self.rows[item]
        hr = np.asarray(arrays["hr"][row])
        lr = np.asarray(arrays["lr"][row])
        parsing = np.asarray(arrays["parsing"][row])
        if self.augment and torch.rand(()) < 0.5:
            # Compact classes have no left/right: flipping needs no label swap.
            hr, lr, parsing = hr[:, ::-1], lr[:, ::-1], parsing[:, ::-1]
        if self.degradation is not None:
            rng = np.random.default_rng(np.random.randint(0, 2**31, size=2))
            lr = degrade(np.ascontiguousarray(hr), self.scale, self.degradation, rng)
        return {
            "lr": _to_chw(lr),
            "hr": _to_chw(hr),
            "parsing": torch.from_numpy(one_hot(parsing, self.parsing_channels)),
        }


def _oversampled(entries: list[dict], oversample: dict[str, int]) -> list[dict]:
    present = {entry["dataset"] for entry in entries}
    unknown = sorted(set(oversample) - present)
    if unknown:
        raise ValueError(f"oversample names datasets not in this split: {unknown} (present: {sorted(present)})")
    if any(int(times) < 1 for times in oversample.values()):
        raise ValueError(f"oversample factors must be whole numbers ≥ 1, got {oversample}")
    return [entry for entry in entries for _ in range(int(oversample.get(entry["dataset"], 1)))]


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
