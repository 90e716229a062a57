"""The paired comparison docs/results.md quotes between release rounds."""

from __future__ import annotations

import pytest

from benchmarks.compare_evaluations import compare  # noqa: E402


def result(scores: dict[str, tuple[float, float, float | None]]) -> dict:
    return {"images": [{"name": name, "model": {"psnr_y": p, "ssim_y": s, "lpips": lp}}
                       for name, (p, s, lp) in scores.items()]}


def test_differences_are_paired_by_image_and_lower_lpips_counts_as_better():
    old = result({"a": (20.0, 0.5, 0.30), "b": (30.0, 0.9, 0.10), "c": (25.0, 0.7, 0.20)})
    new = result({"c": (25.3, 0.7, 0.25), "a": (20.1, 0.6, 0.20), "b": (29.8, 0.9, 0.05)})
    figures = compare(new, old)
    assert figures["psnr_y"]["mean_difference"] == pytest.approx((0.1 - 0.2 + 0.3) / 3)
    assert figures["psnr_y"]["better"] == 2
    assert figures["psnr_y"]["standard_error"] == pytest.approx(0.2516611 / 3**0.5, rel=1e-6)
    assert figures["ssim_y"]["better"] == 1
    assert figures["lpips"]["better"] == 2 and figures["lpips"]["images"] == 3


def test_results_without_lpips_skip_it_and_different_image_sets_are_refused():
    old = result({"a": (20.0, 0.5, None), "b": (30.0, 0.9, None)})
    new = result({"a": (21.0, 0.6, None), "b": (31.0, 0.8, None)})
    assert set(compare(new, old)) == {"psnr_y", "ssim_y"}
    with pytest.raises(ValueError, match="same images"):
        compare(result({"a": (1.0, 1.0, None)}), old)
