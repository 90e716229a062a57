"""The random training pipeline: one HR face → one degraded LR face, drawn from a seeded generator.

After Real-ESRGAN's second-order model (Wang et al. 2021), compressed to what a 128×128 face
and a 16–32 px input allow:

    blur (HR) → [shrink to an intermediate size → noise → JPEG] → shrink to LR → noise → JPEG
                 └──────── two-step shrink; noise/JPEG there: second order ────────┘

A share of samples skips all of it and is the plain Pillow-bicubic LR of the evaluation protocol.
"""

from __future__ import annotations

import math

import numpy as np

from training.data.degrade import bicubic_downsample
from training.degradations import operations as ops
from training.degradations.config import BlurConfig, DegradationConfig, NoiseConfig
from training.degradations.kernels import KERNEL_KINDS, blur_kernel, kernel_size_for


def degrade(hr: np.ndarray, scale: int, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """H×W×3 uint8 HR → (H/scale)×(W/scale)×3 uint8 LR, every choice drawn from ``rng``."""
    if rng.random() < config.clean_share:
        return bicubic_downsample(hr, scale)
    height, width = hr.shape[:2]
    lr_size = (width // scale, height // scale)
    image = ops.to_float(hr)
    if rng.random() < config.blur.probability:
        image = ops.blur(image, random_kernel(config.blur, scale, rng))
    if rng.random() < config.resize.two_step_probability:
        factor = rng.uniform(*config.resize.intermediate_factor)
        middle = (min(width, round(lr_size[0] * factor)), min(height, round(lr_size[1] * factor)))
        image = ops.to_float(ops.to_uint8(ops.resize(image, middle, _choose(config.resize.modes, rng))))
        if rng.random() < config.second_order_probability:
            image = _noise_and_jpeg(image, config, rng)
    image = ops.to_float(ops.to_uint8(ops.resize(image, lr_size, _choose(config.resize.modes, rng))))
    return ops.to_uint8(_noise_and_jpeg(image, config, rng))


def _noise_and_jpeg(image: np.ndarray, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < config.noise.probability:
        image = ops.to_float(ops.to_uint8(random_noise(image, config.noise, rng)))
    if rng.random() < config.jpeg.probability:
        low, high = config.jpeg.quality
        image = ops.jpeg(image, int(rng.integers(low, high + 1)))
    return image


def random_kernel(config: BlurConfig, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A kernel of a kind drawn from ``config.kinds``, its σ from ``sigma_per_scale``·scale."""
    kind, _, shape = _choose(config.kinds, rng).partition("_")
    sigma_low, sigma_high = (bound * scale for bound in config.sigma_per_scale)
    sigma_x = rng.uniform(sigma_low, sigma_high)
    sigma_y, theta = None, 0.0
    if shape == "aniso":
        sigma_y, theta = rng.uniform(sigma_low, sigma_high), rng.uniform(-math.pi, math.pi)
    beta = 1.0
    if kind == "generalized":
        beta = rng.uniform(*config.generalized_beta)
    elif kind == "plateau":
        beta = rng.uniform(*config.plateau_beta)
    size = kernel_size_for(max(sigma_x, sigma_y or 0.0), config.max_kernel_per_scale * scale + 1)
    return blur_kernel(kind, size, sigma_x, sigma_y, theta, beta)


def random_noise(image: np.ndarray, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    gray = rng.random() < config.gray_probability
    if rng.random() < config.gaussian_share:
        return ops.gaussian_noise(image, rng.uniform(*config.gaussian_sigma), gray, rng)
    return ops.poisson_noise(image, rng.uniform(*config.poisson_scale), gray, rng)


def _choose(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    probabilities = np.array([weights[name] for name in names], dtype=np.float64)
    if not names or probabilities.min() < 0 or probabilities.sum() <= 0:
        raise ValueError(f"choice weights must be non-negative with a positive sum, got {weights}")
    return names[int(rng.choice(len(names), p=probabilities / probabilities.sum()))]


def validate_config(config: DegradationConfig) -> None:
    """Refuse a config the pipeline would only fail on later, inside a data-loader worker."""
    for name in config.blur.kinds:
        kind, _, shape = name.partition("_")
        if kind not in KERNEL_KINDS or shape not in ("iso", "aniso"):
            raise ValueError(f"data.degradation.blur.kinds: {name!r} is not <{'|'.join(KERNEL_KINDS)}>_<iso|aniso>")
    unknown_modes = set(config.resize.modes) - set(ops.RESIZE_MODES)
    if unknown_modes:
        raise ValueError(f"data.degradation.resize.modes: unknown {sorted(unknown_modes)} (known: {ops.RESIZE_MODES})")
    low, high = config.jpeg.quality
    if not 1 <= low <= high <= 100:
        raise ValueError(f"data.degradation.jpeg.quality must be 1 ≤ low ≤ high ≤ 100, got {config.jpeg.quality}")
    for where, weights in (("blur.kinds", config.blur.kinds), ("resize.modes", config.resize.modes)):
        if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ValueError(f"data.degradation.{where}: weights must be non-negative with a positive sum")
