"""PSNR-Y / SSIM-Y / Y conversion against values computed independently from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import psnr_y, rgb_to_y, ssim_y

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def gray(value: float, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.full((*shape, 3), value, dtype=np.uint8)


def luma_of_gray(value: float) -> float:
    return 16 + value * (65.481 + 128.553 + 24.966) / 255


def test_y_matches_bt601_formula() -> None:
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16 + 65.481)
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    for y in range(5):
        for x in range(7):
            r, g, b = (float(c) for c in image[y, x])
            expected = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
            assert rgb_to_y(image)[y, x] == pytest.approx(expected, abs=1e-9)
    # float input in 0–255 gives the same as uint8
    np.testing.assert_allclose(rgb_to_y(image.astype(np.float32)), rgb_to_y(image), atol=1e-4)


def test_psnr_of_identical_images_is_infinite() -> None:
    image = np.random.default_rng(1).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    assert psnr_y(image, image) == math.inf


def test_psnr_matches_hand_computed_two_value_image() -> None:
    hr = gray(0, (4, 4))
    sr = hr.copy()
    sr[:2] = 100  # half the pixels differ by 100 grey levels
    difference = luma_of_gray(100) - luma_of_gray(0)
    mse = 0.5 * difference**2
    assert psnr_y(sr, hr) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_crop_border_leaves_out_the_border() -> None:
    hr = gray(50, (12, 12))
    sr = hr.copy()
    sr[0, :] = 200  # only the top row differs
    assert math.isfinite(psnr_y(sr, hr))
    assert psnr_y(sr, hr, crop_border=1) == math.inf


def test_ssim_of_constant_images() -> None:
    a, b = luma_of_gray(80), luma_of_gray(120)
    expected = (2 * a * b + C1) / (a**2 + b**2 + C1)  # no variance: the structure term is C2/C2 = 1
    assert ssim_y(gray(80), gray(120)) == pytest.approx(expected, abs=1e-12)
    assert ssim_y(gray(80), gray(80)) == pytest.approx(1.0, abs=1e-12)


def ssim_by_windows(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM, one 11×11 Gaussian (σ 1.5) window at a time, no filtering tricks."""
    offsets = np.arange(11) - 5
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    values = []
    for top in range(x.shape[0] - 10):
        for left in range(x.shape[1] - 10):
            px, py = x[top : top + 11, left : left + 11], y[top : top + 11, left : left + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx, vy = (window * (px - mx) ** 2).sum(), (window * (py - my) ** 2).sum()
            cov = (window * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    return float(np.mean(values))


def test_ssim_matches_explicit_window_loop() -> None:
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (15, 17, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-40, 41, hr.shape), 0, 255).astype(np.uint8)
    expected = ssim_by_windows(rgb_to_y(sr), rgb_to_y(hr))
    assert ssim_y(sr, hr) == pytest.approx(expected, abs=1e-10)
    assert 0 < expected < 1


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        psnr_y(gray(0, (16, 16)), gray(0, (16, 12)))
    with pytest.raises(ValueError):
        ssim_y(gray(0, (8, 8)), gray(0, (8, 8)))  # smaller than the 11×11 window
