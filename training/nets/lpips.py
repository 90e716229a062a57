"""LPIPS v0.1 with AlexNet (Zhang et al. 2018), numerically the ``lpips`` package's ``LPIPS(net="alex")``."""

from __future__ import annotations

import torch
from torch import nn

from training.nets.alexnet import ALEXNET_CHANNELS, AlexNetFeatures

# The lpips package's ScalingLayer constants, applied to inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def _unit_normalize(feature: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feature / (feature.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Perceptual distance between two N×3×H×W RGB batches in [0, 1]; returns N distances.

    Eval only: the linear layers' dropout of the original is a no-op at test time, so it is left out.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in ALEXNET_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_pretrained(self, alexnet: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(alexnet)
        self.lins.load_state_dict(lins)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = ((x * 2 - 1) - self.shift) / self.scale
        y = ((y * 2 - 1) - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, self.net(x), self.net(y), strict=True):
            diff = (_unit_normalize(fx) - _unit_normalize(fy)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total
