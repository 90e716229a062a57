"""Perceptual loss (eq. 11): L1 between pretrained VGG16 features of SR and HR.

The paper does not name φ. We use the layers of Johnson et al. / LPIPS-VGG — relu1_2, relu2_2,
relu3_3, relu4_3 — with ImageNet normalisation, each layer's mean absolute difference, averaged
over layers (so λ_per keeps its meaning when layers are added or removed). Deeper layers cost
more; on a CPU a shallower list (e.g. up to relu3_3) is much cheaper — see the measurements in
the training README section.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from training.nets.vgg import VGG16Features
from training.weights.store import load_state_dict

DEFAULT_PERCEPTUAL_LAYERS: dict[str, float] = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}


class PerceptualLoss(nn.Module):
    """Weighted mean over layers of mean |φ_l(sr) − φ_l(hr)|; inputs N×3×H×W RGB in [0, 1].

    Raises ``MissingWeightsError`` (pointing at `portraitsr fetch-weights`) without cached weights.
    """

    def __init__(
        self, layers: Mapping[str, float] | None = None, weights_dir: str | Path | None = None
    ) -> None:
        super().__init__()
        self.layer_weights = dict(layers or DEFAULT_PERCEPTUAL_LAYERS)
        self.vgg = VGG16Features(list(self.layer_weights))
        self.vgg.load_pretrained(load_state_dict("vgg16", weights_dir))
        self.vgg.requires_grad_(False)  # a fixed feature extractor: never trained, never in the optimizer
        self.vgg.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # no dropout/batch norm today, but stays frozen whatever the caller does
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        sr_features = self.vgg(sr)
        with torch.no_grad():
            hr_features = self.vgg(hr)
        total = sr.new_zeros(())
        for name, weight in self.layer_weights.items():
            total = total + weight * (sr_features[name] - hr_features[name]).abs().mean()
        return total / sum(self.layer_weights.values())
