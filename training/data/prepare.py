"""Build the training cache: framed 128×128 faces, compact parsing maps, LR inputs, index.

Layout (docs/architecture.md): ``hr.npy`` uint8 N×128×128×3, ``parsing.npy`` uint8 N×128×128,
``lr_x{s}.npy`` uint8 N×(128/s)×(128/s)×3, ``index.json``, ``summary.json`` and the parser
weights ``parser.pt``. The cache is written to ``<out>.partial`` and renamed when complete, so
a reader never sees half a cache.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image
from tqdm import tqdm

from training.data.cache import ParsingSource, Split, index_entry, write_index
from training.data.celebamask_parts import PartMasks
from training.data.degrade import bicubic_downsample
from training.data.framing import FaceFramer, FramingConfig
from training.data.framing_check import celebamask_landmarks, compact_landmarks, summarize_landmarks
from training.data.parsing import COMPACT_CLASSES, compact_from_celebamask
from training.data.prepare_config import PrepareConfig
from training.data.sources import ImageRecord

PARSER_FILE = "parser.pt"


class MaskError(ValueError):
    """The mask of an image is unreadable or not a CelebAMask-HQ id map."""


@dataclass
class FramedFace:
    hr: np.ndarray
    parsing: np.ndarray | None  # compact ids from a real mask, or None
    mask_landmarks_source: np.ndarray | None  # in a 128-px frame of the whole source image
    mask_landmarks_framed: np.ndarray | None  # in the framed 128×128 output


@dataclass
class BadFile:
    path: str
    reason: str


@dataclass
class PrepareResult:
    out_dir: Path
    count: int
    bad_files: list[BadFile] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _read_mask(path: Path | PartMasks) -> np.ndarray:
    try:
        return path.read() if isinstance(path, PartMasks) else _read_mask_unchecked(path)
    except MaskError:
        raise
    except Exception as error:
        raise MaskError(f"mask {path.name}: {type(error).__name__}: {error}") from error


def _read_mask_unchecked(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "I", "I;16"):
            raise MaskError(f"mask mode {image.mode}: expected a class-id image (palette or grayscale)")
        mask = np.asarray(image)
    if mask.ndim != 2:
        raise MaskError(f"mask shape {mask.shape}: expected H×W")
    if mask.max(initial=0) > 18:
        raise MaskError(f"mask has class id {int(mask.max())}; CelebAMask-HQ ids are 0–18")
    return mask.astype(np.uint8)


def frame_record(record: ImageRecord, framer: FaceFramer, framing: FramingConfig | None = None) -> FramedFace:
    """Read, frame and (with a mask) map one face. Raises on unreadable files. A record with
    landmarks of its own is framed from them (given ``framing``), else by its dataset's ``framer``."""
    with Image.open(record.image) as image:
        image.load()
        source_width = image.width
        if record.landmarks is not None and framing is not None:
            framer = framing.landmark_framer(np.array(record.landmarks), source_width, framer.pad_mode)
        hr = framer.frame_image(image)
    if record.mask is None:
        return FramedFace(hr, None, None, None)
    mask = _read_mask(record.mask)
    if mask.shape[1] * image.height != mask.shape[0] * source_width:
        raise MaskError(f"mask {mask.shape[1]}×{mask.shape[0]} has another aspect than image {source_width}×{image.height}")
    framed_mask = framer.frame_mask(mask)
    source_landmarks = celebamask_landmarks(mask)
    if source_landmarks is not None:
        source_landmarks = source_landmarks * (128.0 / mask.shape[1])
    return FramedFace(hr, compact_from_celebamask(framed_mask), source_landmarks, celebamask_landmarks(framed_mask))


def choose_validation(records: list[ImageRecord], has_mask: list[bool], config: PrepareConfig) -> list[Split]:
    """Split per dataset with a fixed seed; a dataset's validation images are drawn among those
    with real masks when it has any (they are also the parser's held-out set). At most half of
    a dataset's candidates become validation images. Images of one person (``split_group``) are
    drawn together, so that no person is in both splits."""
    rng = np.random.default_rng(config.seed)
    splits = [Split.TRAIN] * len(records)
    for spec in config.datasets:
        rows = [i for i, record in enumerate(records) if record.dataset == spec.name]
        masked = [i for i in rows if has_mask[i]]
        pool = masked if masked else rows
        groups: dict[str, list[int]] = {}
        for i in pool:
            groups.setdefault(records[i].split_key, []).append(i)
        keys = list(groups)
        per_group = len(pool) / max(1, len(keys))
        count = min(spec.val_count, len(pool) // 2)  # keep most of a small dataset for training
        count = round(count / per_group)  # in groups (= images when every image is its own group)
        for k in rng.choice(np.arange(len(keys)), size=count, replace=False) if count else []:
            for i in groups[keys[int(k)]]:
                splits[i] = Split.VAL
    return splits


def _compact_rows(partial: Path, names: list[str], keep: int) -> None:
    """Shrink N-row arrays to their first ``keep`` rows (bad files leave unused rows)."""
    for name in names:
        path = partial / name
        full = np.load(path, mmap_mode="r")
        if len(full) == keep:
            continue
        shrunk = open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=full.dtype, shape=(keep, *full.shape[1:]))
        for first in range(0, keep, 1024):
            last = min(first + 1024, keep)
            shrunk[first:last] = full[first:last]
        shrunk.flush()
        del shrunk, full
        path.with_suffix(".tmp.npy").replace(path)


def _replace_dir(partial: Path, out_dir: Path) -> None:
    old = out_dir.with_name(out_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    partial.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


@dataclass
class FramingPass:
    """What framing every record produced: kept rows, their masks, skipped files, landmarks."""

    kept: list[ImageRecord] = field(default_factory=list)
    has_mask: list[bool] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)
    landmarks_source: dict[str, list[np.ndarray]] = field(default_factory=dict)
    landmarks_framed: dict[str, list[np.ndarray]] = field(default_factory=dict)
    framed_by_own_landmarks: Counter = field(default_factory=Counter)  # per dataset


def _frame_all(
    records: list[ImageRecord],
    framing: FramingConfig,
    framers: dict[str, FaceFramer],
    hr: np.ndarray,
    parsing: np.ndarray,
    progress: bool,
) -> FramingPass:
    result = FramingPass()
    for record in tqdm(records, desc="framing", unit="img", disable=not progress):
        try:
            face = frame_record(record, framers[record.framing], framing)
        except Exception as error:  # noqa: BLE001 - every unreadable file is reported and skipped
            failed = record.relative_path
            if isinstance(error, MaskError) and record.mask is not None:
                failed = f"{record.relative_path} (mask {record.mask.name})"
            result.bad.append(BadFile(failed, f"{type(error).__name__}: {error}"))
            tqdm.write(f"skipped {failed}: {type(error).__name__}: {error}")
            continue
        row = len(result.kept)
        hr[row] = face.hr
        if face.parsing is not None:
            parsing[row] = face.parsing
        if face.mask_landmarks_source is not None:
            result.landmarks_source.setdefault(record.dataset, []).append(face.mask_landmarks_source)
        if face.mask_landmarks_framed is not None:
            result.landmarks_framed.setdefault(record.dataset, []).append(face.mask_landmarks_framed)
        result.kept.append(record)
        result.has_mask.append(face.parsing is not None)
        if record.landmarks is not None:
            result.framed_by_own_landmarks[record.dataset] += 1
    return result


def _predict_missing_parsing(
    hr: np.ndarray,
    parsing: np.ndarray,
    masked: np.ndarray,
    is_val: np.ndarray,
    config: PrepareConfig,
    parser_weights: Path | None,
    partial: Path,
    timings: dict[str, float],
    progress: bool,
) -> dict:
    """Train (or load) the parser on masked training rows, measure it on masked validation rows,
    save it and fill the rows without masks. Returns the parser's summary."""
    from training.data import parser_training  # torch: only when a parser is needed

    train_rows = np.nonzero(masked & ~is_val)[0]
    val_rows = np.nonzero(masked & is_val)[0]
    if parser_weights is not None:
        model = parser_training.load_parser(parser_weights)
        summary: dict = {"used": True, "weights": str(parser_weights), "trained_here": False}
    else:
        if len(train_rows) == 0:
            raise ValueError(
                "images without masks need a parser, but no masked training images were found; pass --parser-weights"
            )
        with tqdm(total=None, desc="parser training", unit="step", disable=not progress) as bar:
            model, log = parser_training.train_parser(
                hr[train_rows],
                parsing[train_rows],
                config.parser,
                on_step=lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")),
            )
        summary = {
            "used": True,
            "trained_here": True,
            "train_images": int(len(train_rows)),
            "config": asdict(config.parser),
            "log": {k: v for k, v in asdict(log).items() if k != "losses"},
        }
        timings["parser_training_s"] = log.seconds
    predictor = parser_training.ParsingPredictor(model, hr.shape[1], config.parser.threads)
    batch = config.parser.predict_batch_size
    if len(val_rows):
        predicted = parser_training.predict_parsing(predictor, hr[val_rows], batch)
        summary["heldout"] = {
            "images": int(len(val_rows)),
            **parser_training.parsing_agreement(predicted, parsing[val_rows]),
        }
    parser_training.save_parser(model, partial / PARSER_FILE, {"summary": summary})
    start = time.monotonic()
    unmasked_rows = np.nonzero(~masked)[0]
    with tqdm(total=len(unmasked_rows), desc="parsing", unit="img", disable=not progress) as bar:
        for first in range(0, len(unmasked_rows), batch * 8):
            rows = unmasked_rows[first : first + batch * 8]
            parsing[rows] = parser_training.predict_parsing(predictor, hr[rows], batch, on_batch=bar.update)
    timings["parsing_prediction_s"] = time.monotonic() - start
    return summary


def _write_lr(partial: Path, hr: np.ndarray, count: int, scales: tuple[int, ...], progress: bool) -> list[str]:
    names = []
    size = hr.shape[1]
    for scale in scales:
        name = f"lr_x{scale}.npy"
        lr = open_memmap(partial / name, mode="w+", dtype=np.uint8, shape=(len(hr), size // scale, size // scale, 3))
        for row in tqdm(range(count), desc=f"LR x{scale}", unit="img", disable=not progress):
            lr[row] = bicubic_downsample(hr[row], scale)
        lr.flush()
        del lr
        names.append(name)
    return names


def _framing_summary(framing: FramingConfig, framers: dict[str, FaceFramer], framed: FramingPass, parsing) -> dict:
    # The same measurement on the compact maps covers datasets without masks (predicted maps).
    compact: dict[str, list[np.ndarray]] = {}
    for row, record in enumerate(framed.kept):
        found = compact_landmarks(parsing[row])
        if found is not None:
            key = f"{record.dataset} ({'mask' if framed.has_mask[row] else 'predicted'})"
            compact.setdefault(key, []).append(found)
    return {
        "target": {"preset": "helen50", **asdict(framing.target), "provenance": framing.target_provenance},
        "transforms": {
            name: {
                "scale": round(framer.scale, 4),
                "offset": [round(float(v), 2) for v in framer.offset],
                "pad_mode": framer.pad_mode,
                "provenance": framing.presets[name].provenance,
            }
            for name, framer in framers.items()
        },
        # The rest of each dataset's images used its preset above.
        "framed_by_own_landmarks": dict(sorted(framed.framed_by_own_landmarks.items())),
        "measured_from_masks_before_framing": {
            d: summarize_landmarks(v) for d, v in sorted(framed.landmarks_source.items())
        },
        "measured_from_masks_after_framing": {
            d: summarize_landmarks(v) for d, v in sorted(framed.landmarks_framed.items())
        },
        "measured_from_compact_maps_after_framing": {d: summarize_landmarks(v) for d, v in sorted(compact.items())},
    }


def prepare_cache(
    records: list[ImageRecord],
    out_dir: Path,
    config: PrepareConfig,
    framing: FramingConfig,
    source_root: Path,
    parser_weights: Path | None = None,
    notes: list[str] | None = None,
    show_progress: bool = True,
) -> PrepareResult:
    if not records:
        raise ValueError("no images found")
    timings: dict[str, float] = {}
    size = framing.size
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)

    start = time.monotonic()
    framers = {name: framing.framer(name) for name in sorted({record.framing for record in records})}
    hr = open_memmap(partial / "hr.npy", mode="w+", dtype=np.uint8, shape=(len(records), size, size, 3))
    parsing = open_memmap(partial / "parsing.npy", mode="w+", dtype=np.uint8, shape=(len(records), size, size))
    framed = _frame_all(records, framing, framers, hr, parsing, show_progress)
    count = len(framed.kept)
    if count == 0:
        raise ValueError("no readable images: " + "; ".join(f"{b.path}: {b.reason}" for b in framed.bad[:5]))
    timings["framing_s"] = time.monotonic() - start
    splits = choose_validation(framed.kept, framed.has_mask, config)

    masked = np.array(framed.has_mask + [True] * (len(records) - count))  # unused rows need nothing
    is_val = np.array([split == Split.VAL for split in splits] + [False] * (len(records) - count))
    parser_summary: dict = {"used": False}
    if not masked.all():
        parser_summary = _predict_missing_parsing(
            hr, parsing, masked, is_val, config, parser_weights, partial, timings, show_progress
        )

    start = time.monotonic()
    lr_names = _write_lr(partial, hr, count, config.scales, show_progress)
    timings["lr_s"] = time.monotonic() - start
    framing_summary = _framing_summary(framing, framers, framed, parsing)
    hr.flush()
    parsing.flush()
    del hr, parsing
    _compact_rows(partial, ["hr.npy", "parsing.npy", *lr_names], count)

    index = [
        index_entry(row, record.relative_path, record.dataset,
                    ParsingSource.MASK if framed.has_mask[row] else ParsingSource.PREDICTED, splits[row])
        for row, record in enumerate(framed.kept)
    ]
    write_index(partial, index)
    by_dataset = Counter((e["dataset"], e["split"], e["parsing"]) for e in index)
    summary = {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_root": str(source_root),
        "count": count,
        "files": {"hr": "hr.npy", "parsing": "parsing.npy", **{f"lr_x{s}": f"lr_x{s}.npy" for s in config.scales}},
        "compact_classes": list(COMPACT_CLASSES),
        "splits": dict(Counter(e["split"] for e in index)),
        "datasets": [
            {"dataset": d, "split": s, "parsing": p, "count": n} for (d, s, p), n in sorted(by_dataset.items())
        ],
        "bad_files": [asdict(b) for b in framed.bad],
        "notes": list(notes or []),
        "framing": framing_summary,
        "parser": parser_summary,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (partial / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _replace_dir(partial, out_dir)
    return PrepareResult(out_dir=out_dir, count=count, bad_files=framed.bad, summary=summary)
