"""The ``data.degradation`` section of a training YAML: what the random pipeline may do.

Every range is [low, high], drawn uniformly; every ``*_probability`` is the chance a step runs;
``kinds``/``modes`` map a choice to its relative weight. Defaults are this project's recipe
(docs/degradations.md): the Real-ESRGAN second-order model sized for 128×128 faces and a
small network, with a share of clean bicubic samples so clean input stays good.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BlurConfig:
    probability: float = 0.6
    # Kernel shape -> weight, each "<shape>_iso" or "<shape>_aniso" (kernels.KERNEL_KINDS).
    kinds: dict[str, float] = field(
        default_factory=lambda: {
            "gaussian_iso": 0.40, "gaussian_aniso": 0.25, "generalized_iso": 0.08,
            "generalized_aniso": 0.08, "plateau_iso": 0.10, "plateau_aniso": 0.09,
        }
    )  # fmt: skip
    # σ in HR pixels as a multiple of the scale (×4: 0.2–2.8 px, ×8: 0.4–5.6 px).
    sigma_per_scale: tuple[float, float] = (0.05, 0.7)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    max_kernel_per_scale: int = 5  # kernel side ≤ 5·scale + 1 (21 at ×4, 41 at ×8)


@dataclass
class ResizeConfig:
    modes: dict[str, float] = field(default_factory=lambda: {"area": 0.4, "bilinear": 0.2, "bicubic": 0.4})
    # Shrink in two steps (HR → intermediate → LR) with this chance; the intermediate side is
    # the LR side times a factor drawn here (at most the HR side).
    two_step_probability: float = 0.4
    intermediate_factor: tuple[float, float] = (1.2, 3.0)


@dataclass
class NoiseConfig:
    probability: float = 0.5
    gaussian_share: float = 0.7  # the rest is Poisson (shot) noise
    gaussian_sigma: tuple[float, float] = (1.0, 20.0)  # 0–255 units
    poisson_scale: tuple[float, float] = (0.05, 1.5)
    gray_probability: float = 0.4  # luminance-only noise, else one field per channel


@dataclass
class JpegConfig:
    probability: float = 0.75
    quality: tuple[int, int] = (30, 95)


@dataclass
class DegradationConfig:
    enabled: bool = False
    clean_share: float = 0.2  # samples kept as plain Pillow-bicubic LR (the paper's protocol)
    # With a two-step shrink, noise and JPEG also hit the intermediate image with this chance
    # (Real-ESRGAN's second order: a photo compressed once, resized, then compressed again).
    second_order_probability: float = 0.5
    blur: BlurConfig = field(default_factory=BlurConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)
