"""Paired comparison of two `portraitsr evaluate --json` results on the same images.

    python -m benchmarks.compare_evaluations runs/eval/new.json runs/eval/old.json

For each metric: the mean per-image difference (new − old), its standard error, and on how many
images the new model is better (higher PSNR-Y / SSIM-Y, lower LPIPS). docs/results.md quotes
these figures for each release round against the one before.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

HIGHER_IS_BETTER = {"psnr_y": True, "ssim_y": True, "lpips": False}


def compare(new: dict, old: dict) -> dict[str, dict[str, float]]:
    """Per metric: mean difference, its standard error, images better, images compared."""
    old_rows = {row["name"]: row["model"] for row in old["images"]}
    if set(old_rows) != {row["name"] for row in new["images"]}:
        raise ValueError("the two results do not score the same images")
    result = {}
    for metric, higher_is_better in HIGHER_IS_BETTER.items():
        pairs = [(row["model"][metric], old_rows[row["name"]][metric]) for row in new["images"]]
        if any(a is None or b is None for a, b in pairs):
            continue  # e.g. scored with --no-lpips
        diffs = [a - b for a, b in pairs]
        result[metric] = {
            "mean_difference": statistics.fmean(diffs),
            "standard_error": statistics.stdev(diffs) / len(diffs) ** 0.5,
            "better": sum((d > 0) if higher_is_better else (d < 0) for d in diffs),
            "images": len(diffs),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    args = parser.parse_args()
    new, old = (json.loads(path.read_text()) for path in (args.new, args.old))
    for metric, row in compare(new, old).items():
        print(f"{metric:7s} {row['mean_difference']:+.4f} (s.e. {row['standard_error']:.4f}), "
              f"new better on {row['better']} of {row['images']}")


if __name__ == "__main__":
    main()
