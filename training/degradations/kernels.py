"""Blur kernels of the Real-ESRGAN degradation model (Wang et al. 2021, §3.1; BasicSR's recipe).

Each kernel is the bivariate shape ``k(x) ∝ f(xᵀ Σ⁻¹ x)`` on a square grid, normalised to sum 1:

- Gaussian:             f(d) = exp(-d / 2)
- generalised Gaussian: f(d) = exp(-d^β / 2)      (β < 1: heavier tails, β > 1: flatter top)
- plateau:              f(d) = 1 / (1 + d^β)

Σ = R(θ) diag(σx², σy²) R(θ)ᵀ; isotropic kernels have σx = σy.
"""

from __future__ import annotations

import math

import numpy as np

KERNEL_KINDS = ("gaussian", "generalized", "plateau")


def covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Σ = R(θ) diag(σx², σy²) R(θ)ᵀ."""
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def mahalanobis_grid(size: int, sigma: np.ndarray) -> np.ndarray:
    """xᵀ Σ⁻¹ x for every integer offset x of a size×size grid centred on the middle pixel."""
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1]
    offsets = np.stack([xs, ys], axis=-1).astype(np.float64)
    inverse = np.linalg.inv(sigma)
    return np.einsum("...i,ij,...j->...", offsets, inverse, offsets)


def blur_kernel(
    kind: str, size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> np.ndarray:
    """A size×size float32 kernel summing to 1. ``sigma_y`` None: isotropic."""
    if kind not in KERNEL_KINDS:
        raise ValueError(f"kernel kind must be one of {KERNEL_KINDS}, not {kind!r}")
    if sigma_x <= 0 or (sigma_y is not None and sigma_y <= 0):
        raise ValueError(f"kernel σ must be positive, got {sigma_x}, {sigma_y}")
    distance = mahalanobis_grid(size, covariance(sigma_x, sigma_x if sigma_y is None else sigma_y, theta))
    if kind == "gaussian":
        kernel = np.exp(-0.5 * distance)
    elif kind == "generalized":
        kernel = np.exp(-0.5 * np.power(distance, beta))
    else:
        kernel = 1.0 / (1.0 + np.power(distance, beta))
    return (kernel / kernel.sum()).astype(np.float32)


def kernel_size_for(sigma: float, largest: int) -> int:
    """The odd size that holds ±3σ, at least 3 and at most ``largest``."""
    size = 2 * math.ceil(3 * sigma) + 1
    return int(min(max(size, 3), largest if largest % 2 else largest - 1))
