"""The training objective, eq. 15: L1 + λ1·L_per + λ2·L_pm + λ3·L_rec + λ4·L_dic (eq. 11–14)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from training.losses.perceptual import PerceptualLoss


@dataclass(frozen=True)
class LossWeights:
    """Weights of eq. 15; the defaults are the paper's (§Implementation details). 0 turns a term off."""

    l1: float = 1.0  # eq. 11, ‖Î_sr − I_hr‖₁
    perceptual: float = 0.1  # eq. 11, ‖φ(Î_sr) − φ(I_hr)‖₁ (λ1)
    parsing: float = 0.005  # eq. 12, ‖P̂ − P_gt‖₁ (λ2)
    reconstruction: float = 0.5  # eq. 13, ‖Î_rec − I_hr‖₁ (λ3)
    diversity: float = 0.001  # eq. 14, mean off-diagonal cosine similarity of D (λ4)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")


class SROutput(Protocol):
    """What the loss reads from ``model.network.PortraitSROutput``."""

    sr: torch.Tensor
    parsing: torch.Tensor | None
    rec: torch.Tensor | None


class PortraitSRLoss(nn.Module):
    """Returns ``(total, terms)``: the weighted sum to backpropagate and each active term
    *unweighted* as a detached 0-dim tensor (``float(t)`` for logging; tensors so that DDP can
    all-reduce them without a device sync per term).

    A term is skipped (absent from ``terms``) when its weight is 0 or its input is None: no parsing
    output without SSP/HPF or no ground truth, no ``rec`` or diversity without ATP. The perceptual
    term needs the cached VGG16 weights; without them, construction raises ``MissingWeightsError``
    unless ``weights.perceptual == 0``.
    """

    def __init__(
        self,
        weights: LossWeights | None = None,
        perceptual_layers: Mapping[str, float] | None = None,
        weights_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.perceptual = (
            PerceptualLoss(perceptual_layers, weights_dir) if self.weights.perceptual > 0 else None
        )

    def forward(
        self,
        output: SROutput,
        hr: torch.Tensor,
        parsing: torch.Tensor | None = None,
        diversity: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``output``: the network's output; ``hr``: N×3×H×W in [0, 1]; ``parsing``: the ground-truth
        map N×P×H×W (one-hot); ``diversity``: ``net.diversity_loss()`` (eq. 14, None without ATP)."""
        w = self.weights
        unweighted: dict[str, tuple[float, torch.Tensor]] = {}
        if w.l1 > 0:
            unweighted["l1"] = (w.l1, F.l1_loss(output.sr, hr))
        if self.perceptual is not None:
            unweighted["perceptual"] = (w.perceptual, self.perceptual(output.sr, hr))
        if w.parsing > 0 and output.parsing is not None and parsing is not None:
            unweighted["parsing"] = (w.parsing, F.l1_loss(output.parsing, parsing))
        if w.reconstruction > 0 and output.rec is not None:
            unweighted["reconstruction"] = (w.reconstruction, F.l1_loss(output.rec, hr))
        if w.diversity > 0 and diversity is not None:
            unweighted["diversity"] = (w.diversity, diversity)
        if not unweighted:
            raise ValueError("no active loss term: every weight is 0 or every input is None")
        total = sum(weight * value for weight, value in unweighted.values())
        assert isinstance(total, torch.Tensor)
        return total, {name: value.detach() for name, (_, value) in unweighted.items()}
