"""Restormer building blocks (Zamir et al., CVPR 2022), as design.md §1 reads the backbone.

Transformer block = LayerNorm → MDTA → LayerNorm → GDFN, both with residuals. MDTA attends
across channels (a C/h × C/h map per head), so its cost grows linearly with the image area.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an N×C×H×W map (Restormer's 'WithBias' variant)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: 1×1 + depthwise 3×3 qkv, L2-normalised q and k,
    a learnable temperature per head, attention across channels."""

    def __init__(self, channels: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=bias)
        self.project_out = nn.Conv2d(channels, channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(batch, self.heads, channels // self.heads, height * width) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1)) * self.temperature
        out = attention.softmax(dim=-1) @ v
        return self.project_out(out.reshape(batch, channels, height, width))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: 1×1 to 2·hidden, depthwise 3×3, gelu(x1)·x2, 1×1 back."""

    def __init__(self, channels: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, expansion: float, bias: bool) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = MDTA(channels, heads, bias)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = GDFN(channels, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def transformer_stage(channels: int, depth: int, heads: int, expansion: float, bias: bool) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(channels, heads, expansion, bias) for _ in range(depth)))


class Downsample(nn.Module):
    """conv3×3 (c → c/2) + PixelUnshuffle(2): half the resolution, twice the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """conv3×3 (c → 2c) + PixelShuffle(2): twice the resolution, half the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
