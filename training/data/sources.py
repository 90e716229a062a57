"""Which face images prepare-data reads: the datasets of ../shared/data or a user's folder."""

from __future__ import annotations

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
    framing: str
    masks: str | None = None
    val_count: int = 0


@dataclass(frozen=True)
class ImageRecord:
    dataset: str
    framing: str
    image: Path
    mask: Path | PartMasks | None  # an id mask image, or CelebAMask-HQ's per-part files
    relative_path: str  # of the image, relative to the source root


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
                )
            )
    return records, notes
