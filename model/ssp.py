"""Sketching Structure Prior (paper §SSP, eq. 1–3).

Implicit supervision: a parsing decoder D_pm predicts the face-parsing map P̂ from F_latent
(eq. 1), supervised by L_pm (eq. 12). Explicit modulation: a 3×3 convolution on D_pm's
latent-resolution feature F_pm gives γ and β (eq. 2), which modulate exactly half of
F_latent's channels while the other half passes unchanged (eq. 3).
"""

from __future__ import annotations

import torch
from torch import nn

from model.blocks import Upsample

# The classes of P̂, in channel order: the compact regions every parsing map in the cache uses
# (training/data/parsing.py maps CelebAMask-HQ's 19 classes onto them).
PARSING_CLASSES: tuple[str, ...] = ("background", "skin", "brows", "eyes", "nose", "mouth", "hair")


class ParsingDecoder(nn.Module):
    """D_pm: F_latent (C at H/8) → (F_pm at H/8, P̂ as class probabilities at H)."""

    def __init__(self, latent_channels: int, parsing_channels: int) -> None:
        super().__init__()
        feature_channels = latent_channels // 2
        # F_pm: the parsing feature at the latent resolution (the input of eq. 2).
        self.feature = nn.Sequential(
            nn.Conv2d(latent_channels, feature_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(feature_channels, feature_channels, 3, padding=1),
        )
        # Three ×2 steps back to the output resolution; channels halve at each.
        self.upsample = nn.Sequential(
            Upsample(feature_channels),
            nn.GELU(),
            Upsample(feature_channels // 2),
            nn.GELU(),
            Upsample(feature_channels // 4),
            nn.GELU(),
        )
        self.head = nn.Conv2d(feature_channels // 8, parsing_channels, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parsing_feature = self.feature(latent)
        logits = self.head(self.upsample(parsing_feature))
        # Soft one-hot maps: L_pm (eq. 12) is an L1 distance to one-hot ground truth.
        return parsing_feature, logits.softmax(dim=1)


class SketchingStructurePrior(nn.Module):
    """F_SSP = [γ ⊙ F1 + β, F2] with γ, β = Split(Conv3×3(F_pm)) (eq. 2–3)."""

    def __init__(self, latent_channels: int, one_plus_gamma: bool = True) -> None:
        super().__init__()
        if latent_channels % 2:
            raise ValueError("SSP splits F_latent into two halves: channels must be even")
        self.modulated_channels = latent_channels // 2
        # γ and β each cover the modulated half F1.
        self.modulation = nn.Conv2d(latent_channels // 2, 2 * self.modulated_channels, 3, padding=1)
        self.one_plus_gamma = one_plus_gamma

    def forward(self, latent: torch.Tensor, parsing_feature: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(parsing_feature).chunk(2, dim=1)  # eq. 2
        modulated, unchanged = latent.split(self.modulated_channels, dim=1)
        if self.one_plus_gamma:  # starts as the identity, the stable form of eq. 3
            gamma = gamma + 1
        return torch.cat([gamma * modulated + beta, unchanged], dim=1)  # eq. 3
