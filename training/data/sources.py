"""Which face images prepare-data reads: the datasets of ../shared/data or a user's folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from portraitsr.release import IMAGE_SUFFIXES
from training.data.celebamask_parts import PartMasks, find_part_masks

# The benchmark is evaluation data: prepare-data refuses to read from a folder with this name.
FORBIDDEN_FOLDER_NAMES = ("helen50",)


@dataclass(frozen=True)
class DatasetSpec:
    """One folder of face images (+ optional masks with the same stems)."""

    name: str
    images: str
    framing: str  # preset for images without landmarks of their own
    masks: str | None = None
    val_count: int = 0
    # ``{"<image stem>": [[x, y] × 5]}`` in source pixels (left eye, right eye, nose, left and
    # right mouth corner; left = smaller x): those images are framed one by one from their points.
    landmarks: str | None = None
    # A regular expression whose first group names the person in an image's stem: images of one
    # person go to the same split (e.g. ``^(\d+)_`` for the London set's two photos per person).
    split_group: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    dataset: str
    framing: str
    image: Path
    mask: Path | PartMasks | None  # an id mask image, or CelebAMask-HQ's per-part files
    relative_path: str  # of the image, relative to the source root
    landmarks: tuple[tuple[float, float], ...] | None = None  # 5 points in source pixels
    group: str | None = None  # the person (split_group): one split per group

    @property
    def split_key(self) -> str:
        return self.group if self.group is not None else self.relative_path


def _find_masks(mask_dir: Path) -> dict[str, Path | PartMasks]:
    """Id masks named like the images, or else the original per-part CelebAMask-HQ layout."""
    masks: dict[str, Path | PartMasks] = {
        path.stem: path for path in mask_dir.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    }
    return masks or dict(find_part_masks(mask_dir))


def _check_allowed(folder: Path) -> None:
    for part in folder.resolve().parts:
        if part.lower() in FORBIDDEN_FOLDER_NAMES:
            raise ValueError(f"{folder}: {part} is the evaluation benchmark and must never be used for training")


def discover_records(source_root: Path, datasets: list[DatasetSpec]) -> tuple[list[ImageRecord], list[str]]:
    """Records of every dataset whose image folder exists (sorted by file name), and notes on
    the datasets that were not found."""
    records: list[ImageRecord] = []
    notes: list[str] = []
    for spec in datasets:
        image_dir = source_root / spec.images
        if not image_dir.is_dir():
            notes.append(f"{spec.name}: {image_dir} not found, skipped")
            continue
        _check_allowed(image_dir)
        masks: dict[str, Path | PartMasks] = {}
        if spec.masks is not None:
            mask_dir = source_root / spec.masks  # an absolute spec.masks stays absolute
            if mask_dir.is_dir():
                masks = _find_masks(mask_dir)
            else:
                notes.append(f"{spec.name}: mask folder {mask_dir} not found, parsing maps will be predicted")
        landmarks = _read_landmarks(source_root / spec.landmarks) if spec.landmarks else {}
        group_pattern = re.compile(spec.split_group) if spec.split_group else None
        for path in sorted(image_dir.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            records.append(
                ImageRecord(
                    dataset=spec.name,
                    framing=spec.framing,
                    image=path,
                    mask=masks.get(path.stem),
                    relative_path=path.relative_to(source_root).as_posix(),
                    landmarks=landmarks.get(path.stem),
                    group=_group_of(path.stem, group_pattern, spec.name),
                )
            )
    return records, notes


def _read_landmarks(path: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    raw = json.loads(path.read_text())
    points = {}
    for stem, entry in raw.items():
        if len(entry) != 5 or any(len(point) != 2 for point in entry):
            raise ValueError(f"{path}: {stem} needs 5 [x, y] points, got {entry!r}")
        points[stem] = tuple((float(x), float(y)) for x, y in entry)
    return points


def _group_of(stem: str, pattern: re.Pattern | None, dataset: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(stem)
    if match is None:
        raise ValueError(f"{dataset}: split_group {pattern.pattern!r} does not match image {stem!r}")
    return f"{dataset}/{match.group(1)}"
