"""Training losses, paper eq. 11–15."""

from training.losses.perceptual import DEFAULT_PERCEPTUAL_LAYERS, PerceptualLoss
from training.losses.total import LossWeights, PortraitSRLoss
from training.weights.store import MissingWeightsError

__all__ = [
    "DEFAULT_PERCEPTUAL_LAYERS",
    "LossWeights",
    "MissingWeightsError",
    "PerceptualLoss",
    "PortraitSRLoss",
]
