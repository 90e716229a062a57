"""A compact U-Net face parser: RGB face -> compact class logits at the input resolution.

Trained on the CelebAMask-HQ masks by prepare-data to give parsing maps to faces without
masks (UTKFace, the unmasked CelebA-HQ images). It works at ``work_size`` (64 px by default)
and upsamples its logits: on 2 shared CPU cores full-resolution convolutions are the cost that
matters, and parsing maps are smooth.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FaceParserUNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        work_size: int = 64,
        coordinates: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.channels = tuple(channels)
        self.work_size = work_size
        # Faces are framed alike, so where a pixel is says much about its class: x, y inputs
        # let a small network learn that prior quickly.
        self.coordinates = coordinates
        self.encoders = nn.ModuleList()
        in_channels = 5 if coordinates else 3
        for width in channels:
            self.encoders.append(_conv_block(in_channels, width))
            in_channels = width
        self.decoders = nn.ModuleList(
            _conv_block(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb: N×3×H×W in [0, 1] -> N×classes×H×W logits."""
        size = rgb.shape[-2:]
        x = (rgb - 0.5) / 0.25
        if tuple(size) != (self.work_size, self.work_size):
            x = F.interpolate(x, size=(self.work_size, self.work_size), mode="area")
        if self.coordinates:
            ramp = torch.linspace(-1.0, 1.0, self.work_size, dtype=x.dtype, device=x.device)
            grid_y, grid_x = torch.meshgrid(ramp, ramp, indexing="ij")
            x = torch.cat([x, torch.stack([grid_x, grid_y]).expand(x.shape[0], -1, -1, -1)], dim=1)
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = F.max_pool2d(x, 2)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        logits = self.head(x)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
