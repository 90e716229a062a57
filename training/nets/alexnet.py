"""AlexNet convolutional features (torchvision's ``alexnet().features`` layout and keys)."""

from __future__ import annotations

import torch
from torch import nn

# Indices in ``features`` of the five ReLUs LPIPS reads.
ALEXNET_RELU_INDICES = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)


class AlexNetFeatures(nn.Module):
    """Returns the five ReLU activations (relu1 … relu5) of AlexNet's conv trunk."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in ALEXNET_RELU_INDICES:
                out.append(x)
        return out
