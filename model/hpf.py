"""Holistic Prior Fusion (paper §HPF, eq. 7–10).

m region masks come from the predicted parsing map (eq. 7). Each mask selects a region of the
structure features F_SSP and the texture features F_ATP (eq. 8); the two are concatenated and
refined by channel then spatial attention (eq. 9, CBAM-style) and projected back to C
channels. The regional results are summed and added to F_latent (eq. 10); the decoder then
reads that sum.

Mask initialisation (``hpf_mask_init``): "random" is PyTorch's default for Conv3×3^pre; the
masks then start (and, measured, stay) nearly flat. "parsing_groups" starts mask k as a soft
indicator of one group of parsing classes (MASK_GROUPS), so each region begins as a region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.ssp import PARSING_CLASSES

LATENT_STRIDE = 8  # F_latent is at 1/8 of the output resolution

# The regions "parsing_groups" starts the four masks on: face skin, eyes and brows, nose and
# mouth, hair and background.
MASK_GROUPS: tuple[tuple[str, ...], ...] = (("skin",), ("brows", "eyes"), ("nose", "mouth"), ("hair", "background"))
# σ(GROUP_LOGIT·p − GROUP_LOGIT/2): ≈0.98 on a pixel of the group, ≈0.02 elsewhere.
GROUP_LOGIT = 8.0


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled_avg = x.mean(dim=(2, 3), keepdim=True)
        pooled_max = x.amax(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.mlp(pooled_avg) + self.mlp(pooled_max))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(descriptor))


class RegionAttention(nn.Module):
    """Attn in eq. 9: channel attention, then spatial attention, then a 1×1 projection 2C → C."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.channel = ChannelAttention(2 * channels, reduction)
        self.spatial = SpatialAttention()
        self.project = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.spatial(self.channel(x)))


class HolisticPriorFusion(nn.Module):
    def __init__(
        self, channels: int, parsing_channels: int, num_masks: int, reduction: int, mask_init: str = "random"
    ) -> None:
        super().__init__()
        self.num_masks = num_masks
        self.mask_conv = nn.Conv2d(parsing_channels, num_masks, 3, padding=1)  # Conv3×3^pre, eq. 7
        self.attention = RegionAttention(channels, reduction)  # one Attn shared by all regions
        if mask_init == "parsing_groups":
            self._init_masks_from_groups(parsing_channels, num_masks)
        elif mask_init != "random":
            raise ValueError(f"mask_init must be 'random' or 'parsing_groups', got {mask_init!r}")

    def _init_masks_from_groups(self, parsing_channels: int, num_masks: int) -> None:
        if (parsing_channels, num_masks) != (len(PARSING_CLASSES), len(MASK_GROUPS)):
            raise ValueError(
                f"parsing_groups needs {len(PARSING_CLASSES)} parsing channels and {len(MASK_GROUPS)} masks, "
                f"got {parsing_channels} and {num_masks}"
            )
        with torch.no_grad():
            self.mask_conv.weight.zero_()
            self.mask_conv.bias.fill_(-GROUP_LOGIT / 2)
            for mask, group in enumerate(MASK_GROUPS):
                for name in group:
                    self.mask_conv.weight[mask, PARSING_CLASSES.index(name), 1, 1] = GROUP_LOGIT

    def masks(self, parsing: torch.Tensor) -> torch.Tensor:
        """M = σ(Conv3×3(P̂)) (eq. 7), with P̂ area-averaged to the latent resolution (H/8)."""
        parsing = F.avg_pool2d(parsing, kernel_size=LATENT_STRIDE)
        return torch.sigmoid(self.mask_conv(parsing))

    def fuse(self, ssp: torch.Tensor, atp: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Σ_k Attn([M_k ⊙ F_SSP, M_k ⊙ F_ATP]) (eq. 8–10), all regions in one batched pass."""
        batch, channels, height, width = ssp.shape
        regions = masks.unsqueeze(2)  # N×m×1×H×W
        paired = torch.cat([regions * ssp.unsqueeze(1), regions * atp.unsqueeze(1)], dim=2)  # eq. 8
        attended = self.attention(paired.reshape(-1, 2 * channels, height, width))  # eq. 9
        return attended.reshape(batch, self.num_masks, channels, height, width).sum(dim=1)

    def forward(
        self, latent: torch.Tensor, ssp: torch.Tensor, atp: torch.Tensor, parsing: torch.Tensor
    ) -> torch.Tensor:
        masks = self.masks(parsing)
        return latent + self.fuse(ssp, atp, masks)  # the decoder's input in eq. 10
