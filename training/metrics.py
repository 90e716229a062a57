"""Image-quality metrics of the evaluation protocol (design.md §2), as plain functions.

PSNR and SSIM are computed on the BT.601 luma channel (MATLAB ``rgb2ycbcr`` / BasicSR
``test_y_channel=True``), on 0–255 values, whole image unless ``crop_border`` says otherwise.
Y is kept as float (BasicSR's convention; MATLAB would round it to uint8).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    from training.nets.lpips import LPIPS

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PIXEL_MAX = 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """H×W×3 RGB in 0–255 (uint8 or float) → H×W float64 luma, ``16 + (65.481 R + 128.553 G + 24.966 B)/255``."""
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected H×W×3 RGB, got shape {rgb.shape}")
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _y_pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"image shapes differ: {np.shape(sr)} vs {np.shape(hr)}")
    sr_y, hr_y = rgb_to_y(sr), rgb_to_y(hr)
    if crop_border:
        sr_y = sr_y[crop_border:-crop_border, crop_border:-crop_border]
        hr_y = hr_y[crop_border:-crop_border, crop_border:-crop_border]
    return sr_y, hr_y


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """PSNR in dB on Y of two H×W×3 RGB images in 0–255; ``inf`` for identical images."""
    sr_y, hr_y = _y_pair(sr, hr, crop_border)
    mse = float(np.mean((sr_y - hr_y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PIXEL_MAX**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """1-D normalised Gaussian (``cv2.getGaussianKernel``); the 2-D window is its outer product."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering keeping only windows fully inside the image (MATLAB 'valid')."""
    size = kernel.size
    rows = sliding_window_view(image, size, axis=1) @ kernel
    return sliding_window_view(rows, size, axis=0) @ kernel


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """SSIM on Y (Wang et al. 2004, the MATLAB / BasicSR convention): 11×11 Gaussian window,
    σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255, mean of the SSIM map over all full windows."""
    sr_y, hr_y = _y_pair(sr, hr, crop_border)
    if min(sr_y.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, got {sr_y.shape}")
    c1 = (SSIM_K1 * PIXEL_MAX) ** 2
    c2 = (SSIM_K2 * PIXEL_MAX) ** 2
    kernel = gaussian_window()
    mu_x, mu_y = _filter_valid(sr_y, kernel), _filter_valid(hr_y, kernel)
    sigma_xx = _filter_valid(sr_y * sr_y, kernel) - mu_x**2
    sigma_yy = _filter_valid(hr_y * hr_y, kernel) - mu_y**2
    sigma_xy = _filter_valid(sr_y * hr_y, kernel) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2)
    )
    return float(ssim_map.mean())


def load_lpips(weights_dir: str | None = None, device: str = "cpu") -> LPIPS:
    """LPIPS v0.1 (AlexNet) with the cached pretrained weights (`portraitsr fetch-weights`)."""
    from training.nets.lpips import LPIPS
    from training.weights.store import load_state_dict

    net = LPIPS()
    net.load_pretrained(
        load_state_dict("alexnet", weights_dir), load_state_dict("lpips_alex_lin", weights_dir)
    )
    return net.to(device)


def lpips(sr: np.ndarray, hr: np.ndarray, net: LPIPS | None = None) -> np.ndarray | float:
    """LPIPS (AlexNet, v0.1) between RGB images in 0–255, H×W×3 or N×H×W×3 (a float or N floats).

    Pass ``net`` (from :func:`load_lpips`) when calling repeatedly; lower is more similar.
    """
    import torch

    net = net if net is not None else load_lpips()
    single = np.ndim(sr) == 3
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"image shapes differ: {np.shape(sr)} vs {np.shape(hr)}")
    device = next(net.parameters()).device

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        batch = np.asarray(images, dtype=np.float32)[None] if single else np.asarray(images, dtype=np.float32)
        return torch.from_numpy(batch / 255.0).permute(0, 3, 1, 2).to(device)

    with torch.no_grad():
        distances = net(to_tensor(sr), to_tensor(hr)).cpu().numpy().astype(np.float64)
    return float(distances[0]) if single else distances
