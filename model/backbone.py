"""The Restormer-style U-shaped encoder E and decoder D_sr (design.md §1).

The encoder works at H → H/2 → H/4 → H/8; its last stage gives F_latent (8·dim channels at
H/8). The decoder mirrors it with concatenated skips and a 1×1 channel reduction, then the
refinement blocks and a 3×3 convolution to an RGB residual.
"""

from __future__ import annotations

import torch
from torch import nn

from model.blocks import Downsample, Upsample, transformer_stage
from model.config import ModelConfig

Skips = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Encoder(nn.Module):
    """E (and, with its own depths, E_rec): image → (F_latent, skip features of levels 1–3)."""

    def __init__(self, config: ModelConfig, depths: tuple[int, int, int, int]) -> None:
        super().__init__()
        dim, heads = config.dim, config.heads
        stage = lambda level: transformer_stage(  # noqa: E731 - local shorthand
            dim * 2**level, depths[level], heads[level], config.ffn_expansion_factor, config.bias
        )
        self.patch_embed = nn.Conv2d(config.in_channels, dim, 3, padding=1, bias=config.bias)
        self.level1 = stage(0)
        self.down1_2 = Downsample(dim)
        self.level2 = stage(1)
        self.down2_3 = Downsample(dim * 2)
        self.level3 = stage(2)
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, Skips]:
        enc1 = self.level1(self.patch_embed(image))
        enc2 = self.level2(self.down1_2(enc1))
        enc3 = self.level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        return latent, (enc1, enc2, enc3)


class Decoder(nn.Module):
    """D_sr: (latent feature, skips) → RGB residual at full resolution."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim, heads, depths = config.dim, config.heads, config.num_blocks
        expansion, bias = config.ffn_expansion_factor, config.bias
        self.up4_3 = Upsample(dim * 8)
        self.reduce3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.level3 = transformer_stage(dim * 4, depths[2], heads[2], expansion, bias)
        self.up3_2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.level2 = transformer_stage(dim * 2, depths[1], heads[1], expansion, bias)
        self.up2_1 = Upsample(dim * 2)
        # As in Restormer, level 1 keeps the 2·dim channels of the concatenation.
        self.level1 = transformer_stage(dim * 2, depths[0], heads[0], expansion, bias)
        self.refinement = transformer_stage(dim * 2, config.num_refinement_blocks, heads[0], expansion, bias)
        self.output = nn.Conv2d(dim * 2, config.in_channels, 3, padding=1, bias=bias)

    def forward(self, latent: torch.Tensor, skips: Skips) -> torch.Tensor:
        enc1, enc2, enc3 = skips
        x = self.level3(self.reduce3(torch.cat([self.up4_3(latent), enc3], dim=1)))
        x = self.level2(self.reduce2(torch.cat([self.up3_2(x), enc2], dim=1)))
        x = self.level1(torch.cat([self.up2_1(x), enc1], dim=1))
        return self.output(self.refinement(x))
