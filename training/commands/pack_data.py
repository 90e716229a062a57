"""`portraitsr pack-data`: a training pack of the cache, as large as the trip to a GPU machine allows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Write a size-capped training pack of a prepare-data cache (faces as WebP/JPEG, parsing as PNG, checksums)."

MAX_PACK_MIB = 40.0  # the target; the checkout's own size usually leaves less
TRAVEL_MARGIN_MIB = 1.0  # room for code changes made after packing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=Path("data-cache/faces"), help="prepare-data cache to pack")
    parser.add_argument("--out", type=Path, default=Path("data-pack"), help="pack folder, replaced (default: data-pack)")
    parser.add_argument(
        "--max-mib", type=float, default=None,
        help=f"size budget in MiB (default: what the 64 MiB trip leaves beside this checkout, less "
        f"{TRAVEL_MARGIN_MIB:g} MiB, at most {MAX_PACK_MIB:g})",
    )  # fmt: skip
    parser.add_argument("--format", dest="image_format", choices=["webp", "jpeg"], default="webp")
    parser.add_argument("--quality", type=int, default=90, help="WebP/JPEG quality of the faces (default: 90)")
    parser.add_argument(
        "--weights-from", default="gpu-x8-grow",
        help="training config whose data.oversample gives the source weights (default: gpu-x8-grow)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the weighted order of training faces")


def default_budget_mib(checkout: Path) -> tuple[float, str]:
    """The budget the trip leaves, and how it was worked out."""
    from training.transfer_limits import MIB, TRAVEL_LIMIT, travelling_bytes

    tree = travelling_bytes(checkout) / MIB
    left = TRAVEL_LIMIT / MIB - tree - TRAVEL_MARGIN_MIB
    budget = min(MAX_PACK_MIB, left)
    return budget, (
        f"the trip carries {TRAVEL_LIMIT // MIB} MiB; this checkout sends {tree:.2f} MiB of files, "
        f"{TRAVEL_MARGIN_MIB:g} MiB is kept for later edits: {left:.2f} MiB left, budget {budget:.2f} MiB"
    )


def run(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.data.pack import PackError, PackOptions, describe, write_pack

    checkout = Path(__file__).resolve().parents[2]
    if args.max_mib is None:
        try:
            args.max_mib, how = default_budget_mib(checkout)
        except RuntimeError as error:
            print(f"pack-data: {error}; give --max-mib", file=sys.stderr)
            return 2
        print(f"pack-data: {how}")
    weights = load_train_config(args.weights_from).data.oversample
    try:
        options = PackOptions(
            max_bytes=int(args.max_mib * 2**20),
            image_format=args.image_format,
            quality=args.quality,
            source_weights=weights,
            seed=args.seed,
        )
        manifest = write_pack(args.cache, args.out, options)
    except (PackError, FileNotFoundError) as error:
        print(f"pack-data: {error}", file=sys.stderr)
        return 2
    print(describe(manifest))
    print(f"pack-data: wrote {args.out} (source weights from {args.weights_from}: {weights or 'none'})")
    return 0
