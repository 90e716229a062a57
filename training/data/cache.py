"""A prepare-data cache: its index and its memory-mapped arrays (the one reader, and the index's schema).

The layout (written by ``training.data.prepare``, described in docs/architecture.md):
``index.json`` holds one entry per image (:func:`index_entry`) — ``row`` (in the arrays),
``source`` file, ``dataset``, ``parsing`` (a :class:`ParsingSource`) and ``split`` (a
:class:`Split`); ``hr.npy``, ``parsing.npy`` and ``lr_x{s}.npy`` are uint8 arrays indexed by ``row``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

INDEX_FILE = "index.json"
HR_FILE = "hr.npy"
PARSING_FILE = "parsing.npy"


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"  # held out: validation, checkpoint choice, the parser's held-out set


class ParsingSource(StrEnum):
    MASK = "mask"  # from the data set's own segmentation mask
    PREDICTED = "predicted"  # predicted by the small parser prepare-data trains


SPLITS = tuple(split.value for split in Split)


def index_entry(row: int, source: str, dataset: str, parsing: ParsingSource, split: Split) -> dict[str, Any]:
    """One image's entry of ``index.json``."""
    return {"row": row, "source": source, "dataset": dataset, "parsing": ParsingSource(parsing).value,
            "split": Split(split).value}


def write_index(folder: Path, entries: list[dict[str, Any]]) -> None:
    (Path(folder) / INDEX_FILE).write_text(json.dumps(entries, indent=0) + "\n")


def is_cache(folder: str | Path) -> bool:
    """Whether ``folder`` is a prepare-data cache (it has an index)."""
    return (Path(folder) / INDEX_FILE).is_file()


def lr_file(scale: int) -> str:
    return f"lr_x{scale}.npy"


class TrainingCache:
    """A prepare-data cache folder. Nothing is read until asked for; arrays are memory-mapped."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @cached_property
    def index(self) -> list[dict[str, Any]]:
        path = self.folder / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{self.folder}: not a prepare-data cache (no {INDEX_FILE}; run prepare-data)")
        return json.loads(path.read_text())

    def entries(self, split: str = "all", source: str | None = None) -> list[dict[str, Any]]:
        """Index entries of ``split`` (``train``, ``val`` or ``all``), optionally of one ``source`` dataset."""
        if split != "all" and split not in SPLITS:
            raise ValueError(f"split must be {', '.join(SPLITS)} or all, not {split!r}")
        return [
            entry
            for entry in self.index
            if (split == "all" or entry["split"] == split) and (source is None or entry["dataset"] == source)
        ]

    def datasets(self, split: str = "all") -> list[str]:
        return sorted({entry["dataset"] for entry in self.entries(split)})

    def lr_path(self, scale: int) -> Path:
        """The LR array of ``scale``; FileNotFoundError when the cache was made without it."""
        path = self.folder / lr_file(scale)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no LR images for ×{scale} in this cache (run prepare-data)")
        return path

    def arrays(self, scale: int) -> dict[str, np.ndarray]:
        """``hr``, ``lr`` (of ``scale``) and ``parsing``, memory-mapped (workers share the page cache)."""
        return {
            "hr": self.hr(),
            "lr": np.load(self.lr_path(scale), mmap_mode="r"),
            "parsing": self.parsing(),
        }

    def split_arrays(self, split: str, scale: int, limit: int = 0) -> dict[str, np.ndarray]:
        """``hr``, ``lr`` and ``parsing`` of the first ``limit`` images of ``split`` (all for 0), in memory."""
        rows = [entry["row"] for entry in self.entries(split)]
        rows = rows[:limit] if limit > 0 else rows
        return {name: np.asarray(array[rows]) for name, array in self.arrays(scale).items()}

    def hr(self) -> np.ndarray:
        return np.load(self.folder / HR_FILE, mmap_mode="r")

    def parsing(self) -> np.ndarray:
        return np.load(self.folder / PARSING_FILE, mmap_mode="r")

    def scales(self) -> list[int]:
        """The scales this cache holds LR images for (its ``lr_x{s}.npy`` files)."""
        return sorted(int(path.stem.removeprefix("lr_x")) for path in self.folder.glob(lr_file("*")))

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and source dataset."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for entry in self.index:
            counts[entry["split"]][entry["dataset"]] += 1
        return {split: dict(per_dataset) for split, per_dataset in counts.items()}
