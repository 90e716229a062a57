"""`portraitsr prepare-data`: frame faces like the benchmark and cache them for training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Frame training faces like Helen-50 and write the training cache (hr, parsing, LR, index)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", type=Path, default=Path("../shared/data"),
        help="root holding the dataset folders listed in the config (default: ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=Path("data-cache/faces"), help="cache folder (default: data-cache/faces)")
    parser.add_argument("--config", type=Path, default=None, help="prepare-data YAML (default: training/configs/prepare_data.yaml)")
    parser.add_argument(
        "--images", type=Path, default=None,
        help="a folder of face photos to use instead of the configured datasets (e.g. CelebA-HQ-img)",
    )
    parser.add_argument("--masks", type=Path, default=None, help="with --images: CelebAMask-HQ id masks with the same file stems, or the per-part CelebAMask-HQ-mask-anno folder")
    parser.add_argument(
        "--framing", default="celeba-hq",
        help="with --images: framing preset of training/configs/framing.yaml (default: celeba-hq)",
    )
    parser.add_argument("--val-count", type=int, default=100, help="with --images: validation images (default: 100)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each dataset (quick runs)")
    parser.add_argument("--parser-weights", type=Path, default=None, help="reuse a trained parser.pt instead of training one")
    parser.add_argument("--parser-steps", type=int, default=None, help="cap parser training steps (quick runs)")
    parser.add_argument("--parser-seconds", type=float, default=None, help="cap parser training wall-clock seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


class UsageError(Exception):
    """A bad command line or a missing source: exit status 2 with the message."""


def run(args: argparse.Namespace) -> int:
    import time

    from training.data.framing import load_framing_config
    from training.data.prepare import prepare_cache
    from training.data.sources import discover_records

    try:
        config, source_root = _configure(args)
        framing = load_framing_config(config.framing_config)
        for spec in config.datasets:
            if spec.framing not in framing.presets:
                raise UsageError(f"unknown framing preset {spec.framing!r} (known: {', '.join(framing.presets)})")
        records, notes = discover_records(source_root, config.datasets)
        records = _first_of_each_dataset(records, args.limit)
        for note in notes:
            print(f"prepare-data: {note}", file=sys.stderr)
        if not records:
            raise UsageError(f"no images found under {source_root}")
    except UsageError as error:
        print(f"prepare-data: {error}", file=sys.stderr)
        return 2
    print(f"prepare-data: {len(records)} images from {source_root} -> {args.out}")

    start = time.monotonic()
    result = prepare_cache(
        records, args.out, config, framing, source_root.resolve(),
        parser_weights=args.parser_weights, notes=notes, show_progress=not args.no_progress,
    )
    print(f"prepare-data: wrote {result.count} faces to {result.out_dir} in {time.monotonic() - start:.0f} s")
    _print_summary(result, framing)
    return 0


def _configure(args: argparse.Namespace):
    """The prepare-data config with the command line applied, and the root its datasets are under."""
    import dataclasses

    from training.data.prepare_config import load_prepare_config
    from training.data.sources import DatasetSpec

    config = load_prepare_config(args.config)
    if args.images is not None:
        # A user's folder: its own root, one dataset.
        source_root = args.images.resolve().parent
        masks = None if args.masks is None else str(args.masks.resolve())
        config.datasets = [
            DatasetSpec(name=args.images.name, images=str(args.images.resolve()), framing=args.framing,
                        masks=masks, val_count=args.val_count)
        ]
    else:
        source_root = args.source
        if not source_root.is_dir():
            raise UsageError(f"source folder {source_root} not found")
    if args.parser_steps is not None:
        config.parser = dataclasses.replace(config.parser, max_steps=args.parser_steps)
    if args.parser_seconds is not None:
        config.parser = dataclasses.replace(config.parser, max_seconds=args.parser_seconds)
    return config, source_root


def _first_of_each_dataset(records: list, limit: int | None) -> list:
    """The first ``limit`` records (by file name) of each dataset; all of them without a limit."""
    if limit is None:
        return records
    taken: dict[str, int] = {}
    limited = []
    for record in records:
        taken[record.dataset] = taken.get(record.dataset, 0) + 1
        if taken[record.dataset] <= limit:
            limited.append(record)
    return limited


def _print_summary(result, framing) -> None:
    summary = result.summary
    for entry in summary["datasets"]:
        print(f"  {entry['dataset']:<22} {entry['split']:<5} parsing={entry['parsing']:<9} {entry['count']}")
    heldout = summary["parser"].get("heldout")
    if heldout:
        print(f"  parser on {heldout['images']} held-out masks: pixel accuracy {heldout['pixel_accuracy']:.3f}, "
              f"mean IoU {heldout['mean_iou']:.3f}")
    for name, measured in summary["framing"]["measured_from_masks_after_framing"].items():
        print(f"  framing of {name} from masks: eye midpoint {measured['eye_mid']}, inter-ocular {measured['inter_ocular']}, "
              f"mouth {measured['mouth']} (Helen-50: {list(framing.target.eye_mid)}, {framing.target.inter_ocular}, "
              f"{list(framing.target.mouth)})")
    if result.bad_files:
        print(f"prepare-data: {len(result.bad_files)} unreadable files skipped (listed in summary.json):", file=sys.stderr)
        for bad in result.bad_files:
            print(f"  {bad.path}: {bad.reason}", file=sys.stderr)
