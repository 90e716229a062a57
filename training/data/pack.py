"""The training pack: a prepare-data cache shrunk to a size budget, to travel to a GPU machine.

A pack is a folder of four files:

| file | content |
|---|---|
| ``hr.bin`` | the 128×128 faces, each a WebP (or JPEG) file, concatenated |
| ``parsing.bin`` | their parsing maps, each a PNG (lossless, compact class ids), concatenated |
| ``faces.json`` | per face: the cache's index fields (source, dataset, parsing, split) and the byte ranges |
| ``manifest.json`` | counts per dataset (in the cache, packed, dropped), image settings, the source weights, |
| | the oversampling to train it with, and each file's size and sha256 |

Training never reads a pack: :func:`unpack` turns it back into the cache layout
(``training.data.cache``, LR images made from the decoded faces with prepare-data's Pillow
bicubic), so the cache stays the one format training reads.

Which faces fit: every held-out face first (they choose checkpoints and score the run), then
training faces in a weighted random order until the next one would overrun the budget. A face of a
source with weight w comes w times as readily (exponential keys E/w, Efraimidis–Spirakis): an
epoch of the pack then has the source mixture that oversampling by the weights gives on the whole
cache, with as many distinct faces of the weighted sources as the budget allows. Where a source
runs out before its share, ``train_oversample`` gives it the copies that restore the mixture.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.data.cache import HR_FILE, INDEX_FILE, PARSING_FILE, TrainingCache, lr_file, write_index
from training.data.degrade import bicubic_downsample
from training.metrics import psnr_y

PACK_FORMAT = "portraitsr-training-pack"
PACK_VERSION = 1
MANIFEST_FILE = "manifest.json"
FACES_FILE = "faces.json"
HR_BLOB = "hr.bin"
PARSING_BLOB = "parsing.bin"
IMAGE_FORMATS = {"webp": "WEBP", "jpeg": "JPEG"}
MANIFEST_RESERVE = 16 * 1024  # bytes of the budget kept for manifest.json (a few KiB in practice)
_RANGES = ("hr_bytes", "parsing_bytes")  # faces.json fields that are not index fields


class PackError(ValueError):
    """A pack cannot be written (budget, weights) or read (missing file, wrong checksum)."""


@dataclass(frozen=True)
class PackOptions:
    max_bytes: int
    image_format: str = "webp"  # "webp" or "jpeg"
    quality: int = 90
    source_weights: dict[str, int] = field(default_factory=dict)  # dataset → weight (default 1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise PackError(f"image format must be one of {sorted(IMAGE_FORMATS)}, not {self.image_format!r}")
        if not 1 <= self.quality <= 100:
            raise PackError(f"quality must be 1–100, not {self.quality}")
        if any(int(weight) < 1 for weight in self.source_weights.values()):
            raise PackError(f"source weights must be whole numbers ≥ 1, got {self.source_weights}")


def is_pack(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST_FILE).is_file()


# ------------------------------------------------------------------------------------ encoding
def encode_face(face: np.ndarray, image_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    options = {"method": 6} if image_format == "webp" else {}  # WebP: slowest, smallest encoder setting
    Image.fromarray(face).save(buffer, IMAGE_FORMATS[image_format], quality=quality, **options)
    return buffer.getvalue()


def encode_parsing(parsing: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(parsing).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def decode_face(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def decode_parsing(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


# ------------------------------------------------------------------------------------ choosing
def packing_order(entries: list[dict[str, Any]], weights: dict[str, int], seed: int) -> list[int]:
    """Positions of ``entries`` in packing order: held-out faces (index order), then training faces
    in a weighted random order (a face of weight w is w times as likely to come next)."""
    held_out = [i for i, entry in enumerate(entries) if entry["split"] != "train"]
    train = [i for i, entry in enumerate(entries) if entry["split"] == "train"]
    weight = np.array([weights.get(entries[i]["dataset"], 1) for i in train], dtype=np.float64)
    keys = np.random.default_rng(seed).exponential(size=len(train)) / weight
    return held_out + [train[j] for j in np.argsort(keys, kind="stable")]


def train_oversample(cache_counts: dict[str, int], packed_counts: dict[str, int], weights: dict[str, int]) -> dict[str, int]:
    """Copies per epoch of each packed source's faces so that an epoch of the pack has (as near as
    whole numbers allow) the mixture that ``weights`` give on the whole cache: 1 for every source
    while the weighted order has not run a source out; more for a source that ran out."""
    share = {name: cache_counts[name] * weights.get(name, 1) for name in packed_counts}
    per_face = {name: share[name] / count for name, count in packed_counts.items() if count}
    if not per_face:
        return {}
    least = min(per_face.values())
    return {name: max(1, round(value / least)) for name, value in sorted(per_face.items())}


# ------------------------------------------------------------------------------------ writing
def write_pack(cache_dir: str | Path, pack_dir: str | Path, options: PackOptions) -> dict[str, Any]:
    """Write the pack of ``cache_dir`` into ``pack_dir`` (replaced); returns its manifest."""
    cache = TrainingCache(cache_dir)
    entries = cache.index
    unknown = sorted(set(options.source_weights) - {entry["dataset"] for entry in entries})
    if unknown:
        raise PackError(f"source weights name datasets not in the cache: {unknown} (present: {cache.datasets()})")
    pack_dir = Path(pack_dir)
    partial = pack_dir.with_name(pack_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    records, fidelity = _write_blobs(cache, entries, partial, options)
    (partial / FACES_FILE).write_text(json.dumps(records))
    manifest = _manifest(cache, entries, records, fidelity, partial, options)
    (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(path.stat().st_size for path in partial.iterdir())
    if total > options.max_bytes:  # the budget counts every file; the reserve keeps the manifest inside it
        raise PackError(f"internal: pack of {total} bytes exceeds its budget of {options.max_bytes}")
    shutil.rmtree(pack_dir, ignore_errors=True)
    partial.rename(pack_dir)
    return manifest


def _write_blobs(
    cache: TrainingCache, entries: list[dict[str, Any]], folder: Path, options: PackOptions
) -> tuple[list[dict[str, Any]], list[float]]:
    """Encode faces in packing order into the blobs until the budget is spent; their records and
    each packed face's PSNR-Y against the cache's (the cost of the lossy format)."""
    hr, parsing = cache.hr(), cache.parsing()
    budget = options.max_bytes - MANIFEST_RESERVE
    used = len("[]")
    records: list[dict[str, Any]] = []
    fidelity: list[float] = []
    offsets = {"hr_bytes": 0, "parsing_bytes": 0}
    with (folder / HR_BLOB).open("wb") as hr_blob, (folder / PARSING_BLOB).open("wb") as parsing_blob:
        for position in packing_order(entries, options.source_weights, options.seed):
            entry = entries[position]
            face = np.asarray(hr[entry["row"]])
            data = {
                "hr_bytes": encode_face(face, options.image_format, options.quality),
                "parsing_bytes": encode_parsing(np.asarray(parsing[entry["row"]])),
            }
            record = {key: value for key, value in entry.items() if key != "row"}
            record |= {name: [offsets[name], len(blob)] for name, blob in data.items()}
            cost = sum(len(blob) for blob in data.values()) + len(json.dumps(record)) + len(", ")
            if used + cost > budget:
                if entry["split"] != "train":
                    raise PackError(
                        f"{options.max_bytes / 2**20:.1f} MiB cannot hold the held-out faces alone "
                        f"({len(records)} of {sum(e['split'] != 'train' for e in entries)} fit)"
                    )
                break
            hr_blob.write(data["hr_bytes"])
            parsing_blob.write(data["parsing_bytes"])
            for name, blob in data.items():
                offsets[name] += len(blob)
            used += cost
            records.append(record)
            fidelity.append(psnr_y(decode_face(data["hr_bytes"]), face))
    return records, fidelity


def _manifest(
    cache: TrainingCache,
    entries: list[dict[str, Any]],
    records: list[dict[str, Any]],
    fidelity: list[float],
    folder: Path,
    options: PackOptions,
) -> dict[str, Any]:
    in_cache = Counter((entry["dataset"], entry["split"]) for entry in entries)
    packed = Counter((record["dataset"], record["split"]) for record in records)
    datasets = {
        name: {
            split: {"cache": in_cache[name, split], "packed": packed[name, split],
                    "dropped": in_cache[name, split] - packed[name, split]}
            for split in ("train", "val")
        }
        for name in sorted({name for name, _ in in_cache})
    }  # fmt: skip
    cache_train = {name: counts["train"]["cache"] for name, counts in datasets.items()}
    packed_train = {name: counts["train"]["packed"] for name, counts in datasets.items() if counts["train"]["packed"]}
    index_path = cache.folder / INDEX_FILE
    return {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_cache": {
            "path": str(cache.folder),
            "faces": len(entries),
            "index_sha256": hashlib.sha256(index_path.read_bytes()).hexdigest(),
        },
        "budget_bytes": options.max_bytes,
        "faces": len(records),
        "dropped": len(entries) - len(records),
        "datasets": datasets,
        "image": {
            "format": options.image_format,
            "quality": options.quality,
            "size": int(cache.hr().shape[1]),
            # PSNR-Y of the packed faces against the cache's: how much the lossy format changes the targets.
            "psnr_y_db": {"mean": round(float(np.mean(fidelity)), 2), "min": round(float(np.min(fidelity)), 2)},
        },
        "parsing_maps": "png",
        "scales": cache.scales(),
        "order": "held-out faces, then training faces in a weighted random order (seed, source_weights)",
        "seed": options.seed,
        "source_weights": dict(sorted(options.source_weights.items())),
        "train_oversample": train_oversample(cache_train, packed_train, options.source_weights),
        "files": {name: _file_record(folder / name) for name in (HR_BLOB, PARSING_BLOB, FACES_FILE)},
    }


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


# ------------------------------------------------------------------------------------ reading
def read_manifest(pack_dir: str | Path) -> dict[str, Any]:
    path = Path(pack_dir) / MANIFEST_FILE
    if not path.is_file():
        raise PackError(f"{pack_dir}: not a training pack (no {MANIFEST_FILE}; run portraitsr pack-data)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PACK_FORMAT or manifest.get("version") != PACK_VERSION:
        raise PackError(f"{path}: format {manifest.get('format')} v{manifest.get('version')}, "
                        f"this code reads {PACK_FORMAT} v{PACK_VERSION}")  # fmt: skip
    return manifest


def verify_pack(pack_dir: str | Path) -> dict[str, Any]:
    """The manifest, once every file it lists has its recorded size and sha256."""
    manifest = read_manifest(pack_dir)
    for name, expected in manifest["files"].items():
        path = Path(pack_dir) / name
        if not path.is_file():
            raise PackError(f"{path}: missing")
        if _file_record(path) != expected:
            raise PackError(f"{path}: size or sha256 differs from the manifest (damaged or partly copied)")
    return manifest


def unpack(pack_dir: str | Path, cache_dir: str | Path) -> Path:
    """Verify the pack and write it out as a prepare-data cache at ``cache_dir`` (which must not exist)."""
    pack_dir, cache_dir = Path(pack_dir), Path(cache_dir)
    manifest = verify_pack(pack_dir)
    if cache_dir.exists():
        raise PackError(f"{cache_dir} exists: unpack writes a new cache")
    records = json.loads((pack_dir / FACES_FILE).read_text())
    blobs = {"hr_bytes": (pack_dir / HR_BLOB).read_bytes(), "parsing_bytes": (pack_dir / PARSING_BLOB).read_bytes()}
    size = manifest["image"]["size"]
    hr = np.empty((len(records), size, size, 3), dtype=np.uint8)
    parsing = np.empty((len(records), size, size), dtype=np.uint8)
    index = []
    for row, record in enumerate(records):
        hr[row] = decode_face(_slice(blobs["hr_bytes"], record["hr_bytes"]))
        parsing[row] = decode_parsing(_slice(blobs["parsing_bytes"], record["parsing_bytes"]))
        index.append({"row": row} | {key: value for key, value in record.items() if key not in _RANGES})
    partial = cache_dir.with_name(cache_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.save(partial / HR_FILE, hr)
    np.save(partial / PARSING_FILE, parsing)
    for scale in manifest["scales"]:
        np.save(partial / lr_file(scale), np.stack([bicubic_downsample(face, scale) for face in hr]))
    write_index(partial, index)
    partial.rename(cache_dir)
    return cache_dir


def _slice(blob: bytes, byte_range: list[int]) -> bytes:
    offset, length = byte_range
    return blob[offset : offset + length]


def describe(manifest: dict[str, Any]) -> str:
    """A pack's manifest as a short text table: per dataset and split, packed of cached."""
    lines = [f"{'dataset':20s} {'train packed/cache':>20s} {'held-out packed/cache':>22s}"]
    for name, splits in manifest["datasets"].items():
        train, val = splits["train"], splits["val"]
        lines.append(f"{name:20s} {train['packed']:>9d} / {train['cache']:<8d} {val['packed']:>10d} / {val['cache']:<9d}")
    files = sum(record["bytes"] for record in manifest["files"].values())
    image = manifest["image"]
    lines.append(
        f"{manifest['faces']} faces packed, {manifest['dropped']} dropped; {files / 2**20:.2f} MiB of "
        f"{manifest['budget_bytes'] / 2**20:.2f}; faces as {image['format']} q{image['quality']} "
        f"(PSNR-Y {image['psnr_y_db']['mean']:.2f} dB mean, {image['psnr_y_db']['min']:.2f} min against the cache); "
        f"train with oversample {manifest['train_oversample']}"
    )
    return "\n".join(lines)
